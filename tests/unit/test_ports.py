"""Host port allocation: declared ports, allocation rules, the pod annotation, env, and a real bind check."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.agent.ports import (
    PORTS_ANNOTATION,
    DeclaredPort,
    HostPortAllocator,
    PortAllocationError,
    PortKey,
    declared_ports,
    decode_ports,
    encode_ports,
    pod_port_mapping,
    port_env,
    port_is_free,
    probe_host_ports,
)


class FakeNode:
    """Which ports foreign processes hold on the node (the bind check's view)."""

    def __init__(self, busy: set[int] | None = None) -> None:
        self.busy = busy or set()
        self.checked: list[tuple[str, int, str]] = []

    def __call__(self, address: str, port: int, protocol: str) -> bool:
        self.checked.append((address, port, protocol))
        return port not in self.busy


def allocator(low: int = 20000, high: int = 20009, busy: set[int] | None = None) -> HostPortAllocator:
    return HostPortAllocator("127.0.0.1", (low, high), is_free=FakeNode(busy))


def web(container: str = "app", port: int = 8080, **kw: object) -> DeclaredPort:
    return DeclaredPort(container, port, **kw)  # type: ignore[arg-type]


# -- keys and the annotation -------------------------------------------------------------------------------


def test_port_key_round_trip() -> None:
    key = PortKey("web", 8080, "UDP")
    assert str(key) == "web/8080/UDP"
    assert PortKey.parse("web/8080/UDP") == key
    assert PortKey("web", 80) == PortKey.parse("web/80/TCP")


@pytest.mark.parametrize(
    "text",
    ["web/8080", "web/x/TCP", "web/0/TCP", "web/70000/TCP", "web/80/HTTP", "/80/TCP", "a/b/80/TCP"],
)
def test_port_key_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        PortKey.parse(text)


def test_encode_is_sorted_json() -> None:
    mapping = {PortKey("web", 9090): 20001, PortKey("api", 8080): 20000}
    assert encode_ports(mapping) == '{"api/8080/TCP":20000,"web/9090/TCP":20001}'
    assert decode_ports(encode_ports(mapping)) == mapping


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("nope", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ('{"web/80/TCP": "x"}', "must be a number"),
        ('{"web/80/TCP": 0}', "must be a number"),
        ('{"web/80/TCP": true}', "must be a number"),
        ('{"web/80": 20000}', "is not <container>"),
    ],
)
def test_decode_errors(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        decode_ports(text)


names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
mappings = st.dictionaries(
    st.builds(PortKey, names, st.integers(1, 65535), st.sampled_from(["TCP", "UDP", "SCTP"])),
    st.integers(1, 65535),
    max_size=8,
)


@given(mappings)
def test_annotation_round_trips(mapping: dict[PortKey, int]) -> None:
    assert decode_ports(encode_ports(mapping)) == mapping


def test_pod_port_mapping_reads_the_annotation() -> None:
    pod = {"metadata": {"annotations": {PORTS_ANNOTATION: '{"app/8080/TCP": 20000}'}}}
    assert pod_port_mapping(pod) == {PortKey("app", 8080): 20000}
    assert pod_port_mapping({"metadata": {}}) is None
    assert pod_port_mapping({"metadata": {"annotations": {PORTS_ANNOTATION: "garbage"}}}) is None


# -- declared ports and env --------------------------------------------------------------------------------


POD_SPEC: dict[str, Any] = {
    "initContainers": [{"name": "proxy", "ports": [{"containerPort": 15001, "name": "proxy-in"}]}],
    "containers": [
        {
            "name": "app",
            "ports": [
                {"containerPort": 8080, "name": "http"},
                {"containerPort": 9090, "name": "metrics-port", "protocol": "TCP"},
                {"containerPort": 5353, "protocol": "UDP", "hostPort": 5353},
            ],
        },
        {"name": "side", "image": "x"},
    ],
}


def test_declared_ports() -> None:
    assert declared_ports(POD_SPEC) == [
        DeclaredPort("proxy", 15001, "TCP", "proxy-in"),
        DeclaredPort("app", 8080, "TCP", "http"),
        DeclaredPort("app", 9090, "TCP", "metrics-port"),
        DeclaredPort("app", 5353, "UDP", "", 5353),
    ]


def test_port_env() -> None:
    mapping = {PortKey("app", 8080): 20000, PortKey("app", 9090): 20001, PortKey("app", 5353, "UDP"): 5353}
    app = POD_SPEC["containers"][0]
    assert port_env(app, mapping) == {"PORT": "20000", "PORT_HTTP": "20000", "PORT_METRICS_PORT": "20001"}
    assert port_env(POD_SPEC["containers"][1], mapping) == {}
    # The first port without a name still gives PORT.
    assert port_env({"name": "c", "ports": [{"containerPort": 80}]}, {PortKey("c", 80): 20005}) == {
        "PORT": "20005"
    }


def test_probe_host_ports_prefers_own_container() -> None:
    mapping = {
        PortKey("app", 8080): 20000,
        PortKey("side", 8080): 20001,
        PortKey("side", 9000): 20002,
        PortKey("app", 53, "UDP"): 20003,
    }
    assert probe_host_ports("app", mapping) == {8080: 20000, 9000: 20002}
    assert probe_host_ports("side", mapping) == {8080: 20001, 9000: 20002}


# -- allocation ---------------------------------------------------------------------------------------------


def test_allocates_from_the_range_in_order() -> None:
    alloc = allocator()
    ports = declared_ports(POD_SPEC)
    mapping = alloc.allocate("uid-a", ports, owner="default/a")
    assert mapping == {
        PortKey("proxy", 15001): 20000,
        PortKey("app", 8080): 20001,
        PortKey("app", 9090): 20002,
        PortKey("app", 5353, "UDP"): 5353,
    }
    assert alloc.mapping("uid-a") == mapping
    assert alloc.owner_of(20001) == "uid-a"
    assert alloc.owner_of(5353, "UDP") == "uid-a"
    assert alloc.owner_of(5353, "TCP") is None


def test_allocate_is_idempotent() -> None:
    alloc = allocator()
    first = alloc.allocate("uid-a", [web(port=80), web(port=81)])
    again = alloc.allocate("uid-a", [web(port=80), web(port=81)])
    assert first == again
    # A new declaration adds a port and keeps the old ones.
    more = alloc.allocate("uid-a", [web(port=80), web(port=81), web(port=82)])
    assert {k: v for k, v in more.items() if k in first} == first
    assert more[PortKey("app", 82)] == 20002


def test_duplicate_declarations_get_one_port() -> None:
    alloc = allocator()
    mapping = alloc.allocate("uid-a", [web(port=80), web(port=80, name="again")])
    assert mapping == {PortKey("app", 80): 20000}
    # The declaration with a hostPort wins; two different hostPorts for one port is an error.
    assert alloc.allocate("uid-b", [web(port=80), web(port=80, host_port=9000)]) == {PortKey("app", 80): 9000}
    with pytest.raises(PortAllocationError, match="declared twice with different hostPorts"):
        alloc.allocate("uid-c", [web(port=80, host_port=9001), web(port=80, host_port=9002)])


def test_host_port_collision_names_the_other_pod() -> None:
    alloc = allocator()
    alloc.allocate("uid-other", [web(port=8080, host_port=8080)], owner="default/other")
    with pytest.raises(PortAllocationError) as info:
        alloc.allocate("uid-me", [web(port=80), web(port=8080, host_port=8080)], owner="default/me")
    assert str(info.value) == "port 8080 is already allocated to pod default/other"
    assert alloc.mapping("uid-me") is None
    # UDP is a different port space, and says so when it collides.
    alloc.allocate("uid-dns", [web(port=53, protocol="UDP", host_port=8080)], owner="kube-system/dns")
    with pytest.raises(
        PortAllocationError, match="port 8080/UDP is already allocated to pod kube-system/dns"
    ):
        alloc.allocate("uid-x", [web(port=53, protocol="UDP", host_port=8080)])


def test_host_port_in_range_is_never_handed_out_automatically() -> None:
    alloc = allocator()
    alloc.allocate("uid-a", [web(port=80, host_port=20000)], owner="default/a")
    assert alloc.allocate("uid-b", [web(port=80)]) == {PortKey("app", 80): 20001}
    # The pod's own hostPort is reserved before its automatic ports are picked.
    alloc2 = allocator()
    mapping = alloc2.allocate("uid-c", [web(port=80), web(port=81, host_port=20000)])
    assert mapping == {PortKey("app", 80): 20001, PortKey("app", 81): 20000}


def test_same_host_port_twice_in_one_pod() -> None:
    alloc = allocator()
    with pytest.raises(
        PortAllocationError, match="hostPort 9000/TCP is declared by both app/80/TCP and side/81/TCP"
    ):
        alloc.allocate("uid-a", [web(port=80, host_port=9000), web("side", 81, host_port=9000)])


def test_host_port_held_by_a_foreign_process() -> None:
    alloc = allocator(busy={8080})
    with pytest.raises(PortAllocationError, match=re.escape("port 8080/TCP is already in use on 127.0.0.1")):
        alloc.allocate("uid-a", [web(port=8080, host_port=8080)])


def test_busy_ports_are_skipped() -> None:
    alloc = allocator(busy={20000, 20001})
    assert alloc.allocate("uid-a", [web(port=80)]) == {PortKey("app", 80): 20002}


def test_released_ports_are_reused_last() -> None:
    alloc = allocator(20000, 20002)
    alloc.allocate("uid-a", [web(port=80)])
    alloc.release("uid-a")
    assert alloc.mapping("uid-a") is None
    assert alloc.owner_of(20000) is None
    assert alloc.allocate("uid-b", [web(port=80)]) == {PortKey("app", 80): 20001}
    assert alloc.allocate("uid-c", [web(port=80)]) == {PortKey("app", 80): 20002}
    # Wraps around to the freed port.
    assert alloc.allocate("uid-d", [web(port=80)]) == {PortKey("app", 80): 20000}
    with pytest.raises(PortAllocationError, match="no free TCP host port left in range 20000-20002"):
        alloc.allocate("uid-e", [web(port=80)])
    alloc.release("unknown")  # ignored


def test_exhaustion_is_all_or_nothing() -> None:
    alloc = allocator(20000, 20001)
    with pytest.raises(PortAllocationError):
        alloc.allocate("uid-a", [web(port=80), web(port=81), web(port=82)])
    assert alloc.mapping("uid-a") is None
    assert alloc.owner_of(20000) is None
    assert len(alloc.allocate("uid-a", [web(port=80), web(port=81)])) == 2


def test_bad_protocol() -> None:
    with pytest.raises(PortAllocationError, match="protocol 'HTTP' is not one of TCP, UDP, SCTP"):
        allocator().allocate("uid-a", [web(port=80, protocol="HTTP")])


def test_restore_keeps_ports_after_agent_restart() -> None:
    before = allocator()
    mapping = before.allocate("uid-a", [web(port=80), web(port=81)], owner="default/a")
    annotation = encode_ports(mapping)

    node = FakeNode(busy={20000, 20001})  # the pod's processes still hold them
    after = HostPortAllocator("127.0.0.1", (20000, 20009), is_free=node)
    after.restore("uid-a", decode_ports(annotation), owner="default/a")
    assert node.checked == []
    assert after.allocate("uid-a", [web(port=80), web(port=81)]) == mapping
    assert after.allocate("uid-b", [web(port=80)]) == {PortKey("app", 80): 20002}
    assert after.foreign_owner(20000, "uid-b") == "default/a"
    assert after.foreign_owner(20000, "uid-a") is None
    assert after.foreign_owner(20009, "uid-b") is None


def test_restore_conflicts() -> None:
    alloc = allocator()
    alloc.restore("uid-a", {PortKey("app", 80): 20000}, owner="default/a")
    with pytest.raises(PortAllocationError, match="port 20000 is already allocated to pod default/a"):
        alloc.restore("uid-b", {PortKey("app", 80): 20000})
    with pytest.raises(PortAllocationError, match="recorded for both"):
        alloc.restore("uid-c", {PortKey("app", 80): 20005, PortKey("app", 81): 20005})
    assert alloc.pods() == ["uid-a"]
    # Restoring the same pod again replaces its mapping.
    alloc.restore("uid-a", {PortKey("app", 80): 20003})
    assert alloc.owner_of(20000) is None
    assert alloc.foreign_owner(20003, "x") == "default/a"


def test_bad_range() -> None:
    with pytest.raises(ValueError):
        HostPortAllocator(port_range=(30000, 20000))


# -- properties ---------------------------------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("allocate"),
            st.sampled_from(["a", "b", "c", "d"]),
            st.lists(
                st.tuples(
                    st.sampled_from(["x", "y"]),
                    st.integers(1, 4),
                    st.sampled_from(["TCP", "UDP"]),
                    st.one_of(st.none(), st.integers(20003, 20012)),
                ),
                max_size=4,
            ),
        ),
        st.tuples(st.just("release"), st.sampled_from(["a", "b", "c", "d"]), st.just([])),
    ),
    max_size=25,
)


@settings(max_examples=200)
@given(operations)
def test_allocation_invariants(ops: list[tuple[str, str, list[tuple[str, int, str, int | None]]]]) -> None:
    alloc = allocator(20000, 20007)
    for op, uid, ports in ops:
        if op == "release":
            alloc.release(uid)
            continue
        before = alloc.mapping(uid)
        declared = [DeclaredPort(c, p, proto, host_port=h) for c, p, proto, h in ports]
        try:
            mapping = alloc.allocate(uid, declared, owner=f"ns/{uid}")
        except PortAllocationError:
            assert alloc.mapping(uid) == before  # all or nothing
            continue
        assert before is None or all(mapping[k] == v for k, v in before.items())
        asked: dict[PortKey, int | None] = {}
        for port in declared:
            if asked.get(port.key) is None:
                asked[port.key] = port.host_port
        for key, host_port in asked.items():
            if before is not None and key in before:
                continue
            if host_port is not None:
                assert mapping[key] == host_port
            else:
                assert 20000 <= mapping[key] <= 20007
    # No host port (per protocol) is held by two pods, and the index agrees with the mappings.
    seen: dict[tuple[str, int], str] = {}
    for uid in alloc.pods():
        for key, host_port in (alloc.mapping(uid) or {}).items():
            assert (key.protocol, host_port) not in seen
            seen[(key.protocol, host_port)] = uid
            assert alloc.owner_of(host_port, key.protocol) == uid
    # A fresh allocator restored from the annotations agrees.
    fresh = allocator(20000, 20007)
    for uid in alloc.pods():
        fresh.restore(uid, decode_ports(encode_ports(alloc.mapping(uid) or {})))
    for (protocol, host_port), uid in seen.items():
        assert fresh.owner_of(host_port, protocol) == uid


# -- the real bind check (loopback) ---------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_port_is_free_on_loopback(listener: int) -> None:
    assert port_is_free("127.0.0.1", listener, "TCP") is False
    assert port_is_free("127.0.0.1", listener, "UDP") is True
    assert port_is_free("127.0.0.1", listener, "SCTP") is True


def test_real_allocator_skips_a_listening_port(listener: int) -> None:
    alloc = HostPortAllocator("127.0.0.1", (listener, listener))
    with pytest.raises(
        PortAllocationError, match=f"no free TCP host port left in range {listener}-{listener}"
    ):
        alloc.allocate("uid-a", [web(port=80)])
    # UDP on the same number is a different port and is free.
    assert alloc.allocate("uid-a", [web(port=80, protocol="UDP")]) == {PortKey("app", 80, "UDP"): listener}


def test_real_allocator_refuses_a_busy_host_port(listener: int) -> None:
    alloc = HostPortAllocator("127.0.0.1", (20000, 29999))
    with pytest.raises(
        PortAllocationError, match=re.escape(f"port {listener}/TCP is already in use on 127.0.0.1")
    ):
        alloc.allocate("uid-a", [web(port=80, host_port=listener)])
