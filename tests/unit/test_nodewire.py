"""The node API's wire format (``agent/nodewire.py``): pure round trips and upstream's exec Status shapes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as s

from corral.agent import nodewire as wire
from corral.agent.usage import NodeUsage, PodUsage, Usage
from corral.apiserver import status as st
from corral.apiserver.nodeproxy import LogOptions
from corral.apiserver.remotenode import node_target

T = datetime(2026, 11, 26, 12, 0, 1, 250000, tzinfo=UTC)


@given(s.integers(0, 255), s.binary(max_size=64))
def test_frames_round_trip(channel: int, data: bytes) -> None:
    assert wire.parse_frame(wire.frame(channel, data)) == (channel, data)


def test_empty_frames_are_ignored_and_close_names_its_channel() -> None:
    assert wire.parse_frame(b"") is None
    assert wire.close_frame(wire.STDIN) == b"\xff\x00"


@given(s.integers(0, 255))
def test_exit_codes_survive_the_status(code: int) -> None:
    assert wire.status_outcome(wire.exit_status(code)) == code


def test_exit_status_is_upstreams_shape() -> None:
    assert wire.exit_status(0) == {"metadata": {}, "status": "Success"}
    assert wire.exit_status(3) == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: exit status 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }


def test_errors_survive_the_status() -> None:
    err = st.bad_request('container "c" in pod "p" is not running')
    back = wire.status_outcome(wire.error_status(err))
    assert isinstance(back, st.ApiError)
    assert (back.code, back.reason, back.message) == (400, "BadRequest", err.message)


@pytest.mark.parametrize(
    "status",
    [None, [], {"status": "Failure", "reason": "NonZeroExitCode"}, {"status": "Failure", "code": 99}],
)
def test_malformed_statuses_are_errors_not_crashes(status: object) -> None:
    back = wire.status_outcome(status)
    assert isinstance(back, st.ApiError) and back.code == 500


def test_log_options_round_trip() -> None:
    full = LogOptions("c", True, 5, 30, T, True, True, 1024)
    query = dict(wire.log_query("uid-1", full))
    assert query["podUID"] == "uid-1"
    assert wire.log_options("c", query) == full
    assert wire.log_query("u", LogOptions("c")) == [("podUID", "u")]
    assert wire.log_options("c", {}) == LogOptions("c")


def test_bad_log_parameters_are_400() -> None:
    with pytest.raises(st.ApiError) as err:
        wire.log_options("c", {"tailLines": "x"})
    assert err.value.code == 400 and err.value.message == "tailLines: invalid value 'x': must be an integer"
    with pytest.raises(st.ApiError):
        wire.log_options("c", {"sinceTime": "yesterday"})


def test_paths_escape_their_segments() -> None:
    assert wire.logs_path("ns", "p/q", "c") == "/containerLogs/ns/p%2Fq/c"
    assert wire.exec_path("ns", "p", "u-1", "c") == "/exec/ns/p/u-1/c"


def test_usage_round_trips() -> None:
    u = Usage(T, 0.5, 1234, 4096)
    sample = NodeUsage(u, {"uid-1": PodUsage(T, 0.5, {"c": u, "d": Usage(T, 1.0, 0, 0)})})
    assert wire.usage_from_json(wire.usage_to_json(sample)) == sample
    assert wire.usage_from_json(wire.usage_to_json(None)) == NodeUsage(None, {})
    with pytest.raises(ValueError):
        wire.usage_from_json({"node": {"timestamp": T.isoformat()}, "pods": {}})
    with pytest.raises(ValueError):
        wire.usage_from_json([])


def test_node_target_reads_internal_ip_and_daemon_port() -> None:
    def node(port: object, addresses: list[dict[str, str]]) -> dict[str, object]:
        return {"status": {"addresses": addresses, "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}

    ip = [{"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": "10.0.0.5"}]
    assert node_target(node(10250, ip)) == ("10.0.0.5", 10250)
    assert node_target(node(0, ip)) is None  # the agent serves no node API
    assert node_target(node(10250, [{"type": "Hostname", "address": "h"}])) is None
    assert node_target({}) is None
