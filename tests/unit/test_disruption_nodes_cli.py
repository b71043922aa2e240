"""The pure parts of ``corral cordon/drain/taint``: taint arguments, taint edits, drain filters, durations."""

from __future__ import annotations

from typing import Any

import pytest

from corral.cli.errors import CliError
from corral.cli.nodes import (
    DrainOptions,
    Taint,
    TaintChanges,
    apply_taint_changes,
    parse_duration,
    parse_taint_args,
    plan_drain,
)

JSON = dict[str, Any]


@pytest.mark.parametrize(
    ("args", "add", "remove"),
    [
        (["dedicated=gpu:NoSchedule"], [Taint("dedicated", "gpu", "NoSchedule")], []),
        (["maint:NoExecute"], [Taint("maint", "", "NoExecute")], []),
        (["example.com/x=y:PreferNoSchedule"], [Taint("example.com/x", "y", "PreferNoSchedule")], []),
        (["dedicated-"], [], [Taint("dedicated", "", "")]),
        (["dedicated:NoSchedule-"], [], [Taint("dedicated", "", "NoSchedule")]),
        (["dedicated=gpu:NoSchedule-"], [], [Taint("dedicated", "", "NoSchedule")]),
        (["a=1:NoSchedule", "b-"], [Taint("a", "1", "NoSchedule")], [Taint("b", "", "")]),
    ],
)
def test_parse_taint_args(args: list[str], add: list[Taint], remove: list[Taint]) -> None:
    assert parse_taint_args(args) == TaintChanges(tuple(add), tuple(remove))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "at least one taint update is required"),
        (["dedicated=gpu"], "invalid taint spec: dedicated=gpu"),
        (["dedicated=gpu:Sometimes"], "invalid taint effect: Sometimes, unsupported taint effect"),
        (["a=b=c:NoSchedule"], "invalid taint spec: a=b=c:NoSchedule"),
        (["bad key:NoSchedule"], "invalid taint spec: bad key:NoSchedule"),
        (["k=bad value!:NoSchedule"], "invalid taint spec: k=bad value!:NoSchedule"),
        (["k:Sometimes-"], "invalid taint effect: Sometimes"),
        (["a=1:NoSchedule", "a:NoSchedule-"], "can not both modify and remove the following taint(s)"),
        (["a=1:NoSchedule", "a=2:NoSchedule"], "duplicated taints with the same key and effect"),
    ],
)
def test_bad_taint_args(args: list[str], message: str) -> None:
    with pytest.raises(CliError) as bad:
        parse_taint_args(args)
    assert message in str(bad.value)


EXISTING = [{"key": "a", "value": "1", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}]


@pytest.mark.parametrize(
    ("args", "overwrite", "taints", "verb"),
    [
        (
            ["c=3:NoSchedule"],
            False,
            [*EXISTING, {"key": "c", "value": "3", "effect": "NoSchedule"}],
            "tainted",
        ),
        (
            ["a=9:NoSchedule"],
            True,
            [{"key": "a", "value": "9", "effect": "NoSchedule"}, EXISTING[1]],
            "tainted",
        ),
        (["a=9:NoExecute"], False, [*EXISTING, {"key": "a", "value": "9", "effect": "NoExecute"}], "tainted"),
        (["a-"], False, [EXISTING[1]], "untainted"),
        (["b:NoExecute-"], False, [EXISTING[0]], "untainted"),
        (["a-", "c:NoSchedule"], False, [EXISTING[1], {"key": "c", "effect": "NoSchedule"}], "modified"),
    ],
)
def test_apply_taint_changes(args: list[str], overwrite: bool, taints: list[JSON], verb: str) -> None:
    assert apply_taint_changes("n1", EXISTING, parse_taint_args(args), overwrite) == (taints, verb)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a=9:NoSchedule"], "node n1 already has a taint(s) with same effect(s) and --overwrite is false"),
        (["zzz-"], 'taint "zzz" not found'),
        (["b:NoSchedule-"], 'taint "b:NoSchedule" not found'),
    ],
)
def test_refused_taint_changes(args: list[str], message: str) -> None:
    with pytest.raises(CliError) as refused:
        apply_taint_changes("n1", EXISTING, parse_taint_args(args), False)
    assert str(refused.value) == message


def pod(
    name: str, *, owner: str | None = "ReplicaSet", phase: str = "Running", empty_dir: bool = False
) -> JSON:
    meta: JSON = {"name": name, "namespace": "default"}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "x", "uid": "u", "controller": True}]
    volumes = [{"name": "scratch", "emptyDir": {}}] if empty_dir else []
    return {"metadata": meta, "spec": {"volumes": volumes}, "status": {"phase": phase}}


def names(pods: list[JSON]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_drain_evicts_managed_pods() -> None:
    plan = plan_drain([pod("a"), pod("b", owner="Job")], DrainOptions())
    assert (names(plan.evict), plan.errors, plan.warnings) == (["a", "b"], [], [])


@pytest.mark.parametrize(
    ("pods", "options", "evicted", "errors", "warnings"),
    [
        (
            [pod("solo", owner=None)],
            DrainOptions(),
            [],
            ["cannot delete Pods that declare no controller (use --force to override): default/solo"],
            [],
        ),
        (
            [pod("solo", owner=None)],
            DrainOptions(force=True),
            ["solo"],
            [],
            ["deleting Pods that declare no controller: default/solo"],
        ),
        ([pod("done", owner=None, phase="Succeeded")], DrainOptions(), ["done"], [], []),
        (
            [pod("ds", owner="DaemonSet")],
            DrainOptions(),
            [],
            ["cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/ds"],
            [],
        ),
        (
            [pod("ds", owner="DaemonSet")],
            DrainOptions(ignore_daemonsets=True),
            [],
            [],
            ["ignoring DaemonSet-managed Pods: default/ds"],
        ),
        (
            [pod("cache", empty_dir=True)],
            DrainOptions(),
            [],
            ["cannot delete Pods with local storage (use --delete-emptydir-data to override): default/cache"],
            [],
        ),
        (
            [pod("cache", empty_dir=True)],
            DrainOptions(delete_emptydir_data=True),
            ["cache"],
            [],
            ["deleting Pods with local storage: default/cache"],
        ),
    ],
)
def test_drain_filters(
    pods: list[JSON], options: DrainOptions, evicted: list[str], errors: list[str], warnings: list[str]
) -> None:
    plan = plan_drain(pods, options)
    assert (names(plan.evict), plan.errors, plan.warnings) == (evicted, errors, warnings)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60.0), ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0), ("0", 0.0), ("1.5s", 1.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["60", "soon", "", "5x", "-1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(CliError, match="invalid duration"):
        parse_duration(text)
