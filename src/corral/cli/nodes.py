"""Node maintenance: ``corral cordon|uncordon NODE``, ``corral drain NODE``, ``corral taint nodes NODE …``.

The same requests and lines as kubectl's commands of those names:

- ``cordon`` / ``uncordon`` patch ``spec.unschedulable`` (the scheduler then places nothing new there).
- ``drain`` cordons, lists the node's pods (``fieldSelector=spec.nodeName=NODE``), refuses pods it would
  lose for good unless told (no controller → ``--force``; emptyDir data → ``--delete-emptydir-data``;
  DaemonSet pods → ``--ignore-daemonsets``), then POSTs a ``policy/v1`` Eviction for each pod at once.
  An eviction refused with 429 (it would break a PodDisruptionBudget) is retried every 5 s, as kubectl
  does; every evicted pod is waited for until it is gone. ``--timeout`` bounds the whole drain (0: none).
- ``taint`` adds ``key[=value]:Effect`` and removes ``key[:Effect]-`` on ``spec.taints``, written with
  compare-and-set on the node's resourceVersion.

Pure parts with table tests: :func:`parse_taint_args`, :func:`apply_taint_changes`, :func:`plan_drain`,
:func:`parse_duration`. The rest is IO over the HTTP transport.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

import typer

from corral.api.resources import REGISTRY
from corral.api.selectors import label_key_errors, label_value_errors
from corral.apiserver.status import ApiError
from corral.cli.errors import CliError
from corral.cli.output import Printer
from corral.cli.session import ContextOption, KubeconfigOption, cluster_options, connected, run
from corral.client import HttpTransport

JSON = dict[str, Any]
NODES = REGISTRY.require("nodes")
PODS = REGISTRY.require("pods")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
EVICTION_RETRY_SECONDS = 5.0  # kubectl drain's wait after a 429
POLL_SECONDS = 1.0  # kubectl drain's poll while waiting for an evicted pod to be gone


def _d(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _meta(obj: Mapping[str, Any]) -> JSON:
    return _d(obj.get("metadata"))


# ------------------------------------------------------------------------------------------ taints


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str = ""
    effect: str = ""

    def to_json(self) -> JSON:
        out: JSON = {"key": self.key}
        if self.value:
            out["value"] = self.value
        out["effect"] = self.effect
        return out

    def spec(self) -> str:
        text = f"{self.key}={self.value}" if self.value else self.key
        return f"{text}:{self.effect}" if self.effect else text


@dataclass(frozen=True, slots=True)
class TaintChanges:
    add: tuple[Taint, ...] = ()
    remove: tuple[Taint, ...] = ()
    """Effect "" removes every taint with that key."""


def _check_effect(effect: str, spec: str) -> None:
    if effect not in EFFECTS:
        raise CliError(
            f"invalid taint effect: {effect}, unsupported taint effect "
            f"(in {spec!r}; one of {', '.join(EFFECTS)})"
        )


def _parse_one(spec: str) -> Taint:
    """``key[=value]:Effect`` (kubectl's parseTaint)."""
    parts = spec.split(":")
    if len(parts) != 2 or not parts[1]:
        raise CliError(f"invalid taint spec: {spec}, expected key[=value]:Effect")
    key_value, effect = parts
    kv = key_value.split("=")
    if len(kv) > 2:
        raise CliError(f"invalid taint spec: {spec}, at most one '=' between key and value")
    key, value = kv[0], kv[1] if len(kv) == 2 else ""
    problems = label_key_errors(key) + (label_value_errors(value) if value else [])
    if problems:
        raise CliError(f"invalid taint spec: {spec}, {'; '.join(problems)}")
    _check_effect(effect, spec)
    return Taint(key, value, effect)


def parse_taint_args(args: Sequence[str]) -> TaintChanges:
    """Taints to add (``k=v:Effect``, ``k:Effect``) and to remove (``k-``, ``k:Effect-``, ``k=v:Effect-``)."""
    if not args:
        raise CliError("at least one taint update is required")
    add: list[Taint] = []
    remove: list[Taint] = []
    for spec in args:
        if spec.endswith("-"):
            body = spec[:-1]
            key, _, effect = body.partition(":")
            key = key.split("=", 1)[0]  # a value is accepted and ignored: removal is by key and effect
            if effect:
                _check_effect(effect, spec)
            if not key or label_key_errors(key):
                raise CliError(f"invalid taint spec: {spec}")
            remove.append(Taint(key, "", effect))
        else:
            add.append(_parse_one(spec))
    both = [t.spec() for t in add if any(r.key == t.key and r.effect in ("", t.effect) for r in remove)]
    if both:
        raise CliError(
            f"can not both modify and remove the following taint(s) in the same command: {', '.join(both)}"
        )
    seen: set[tuple[str, str]] = set()
    for t in add:
        if (t.key, t.effect) in seen:
            raise CliError(f"duplicated taints with the same key and effect: {t.spec()}")
        seen.add((t.key, t.effect))
    return TaintChanges(tuple(add), tuple(remove))


def apply_taint_changes(
    node_name: str, existing: Sequence[Mapping[str, Any]], changes: TaintChanges, overwrite: bool
) -> tuple[list[JSON], str]:
    """The node's new ``spec.taints`` and kubectl's verb (``tainted`` / ``untainted`` / ``modified``)."""
    current = [dict(t) for t in existing if isinstance(t, Mapping)]
    for taint in changes.add:
        same = [t for t in current if t.get("key") == taint.key and t.get("effect") == taint.effect]
        if same and not overwrite:
            raise CliError(
                f"node {node_name} already has {taint.key} taint(s) with same effect(s) "
                "and --overwrite is false"
            )
    for taint in changes.remove:
        if not any(t.get("key") == taint.key and taint.effect in ("", t.get("effect")) for t in current):
            raise CliError(f'taint "{taint.spec()}" not found')
    kept = [
        t
        for t in current
        if not any(r.key == t.get("key") and r.effect in ("", t.get("effect")) for r in changes.remove)
    ]
    out: list[JSON] = []
    added = list(changes.add)
    for t in kept:
        replacement = next((a for a in added if a.key == t.get("key") and a.effect == t.get("effect")), None)
        if replacement is not None:
            added.remove(replacement)
            out.append(replacement.to_json())
        else:
            out.append(t)
    out += [a.to_json() for a in added]
    if changes.add and changes.remove:
        verb = "modified"
    elif changes.add:
        verb = "tainted"
    else:
        verb = "untainted"
    return out, verb


# ------------------------------------------------------------------------------------------ drain


@dataclass(frozen=True, slots=True)
class DrainOptions:
    force: bool = False
    ignore_daemonsets: bool = False
    delete_emptydir_data: bool = False


@dataclass(slots=True)
class DrainPlan:
    evict: list[JSON] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _controller(pod: Mapping[str, Any]) -> JSON | None:
    for ref in _meta(pod).get("ownerReferences") or []:
        if _d(ref).get("controller") is True:
            return _d(ref)
    return None


def _pod_id(pod: Mapping[str, Any]) -> str:
    return f"{_meta(pod).get('namespace', '')}/{_meta(pod).get('name', '')}"


def plan_drain(pods: Sequence[Mapping[str, Any]], options: DrainOptions) -> DrainPlan:
    """Which of a node's pods to evict, as kubectl's drain filters decide (warnings and refusals too)."""
    plan = DrainPlan()
    daemons: list[str] = []
    daemon_refused: list[str] = []
    unmanaged: list[str] = []
    unmanaged_refused: list[str] = []
    local: list[str] = []
    local_refused: list[str] = []
    for pod in pods:
        phase = _d(pod.get("status")).get("phase")
        finished = phase in ("Succeeded", "Failed")
        ref = _controller(pod)
        if ref is not None and ref.get("kind") == "DaemonSet":
            if finished:
                plan.evict.append(dict(pod))
            elif options.ignore_daemonsets:
                daemons.append(_pod_id(pod))
            else:
                daemon_refused.append(_pod_id(pod))
            continue
        if ref is None and not finished:
            (unmanaged if options.force else unmanaged_refused).append(_pod_id(pod))
            if not options.force:
                continue
        uses_empty_dir = any("emptyDir" in _d(v) for v in _d(pod.get("spec")).get("volumes") or [])
        if uses_empty_dir and not finished:
            (local if options.delete_emptydir_data else local_refused).append(_pod_id(pod))
            if not options.delete_emptydir_data:
                continue
        plan.evict.append(dict(pod))
    if daemon_refused:
        plan.errors.append(
            "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): "
            + ", ".join(daemon_refused)
        )
    if unmanaged_refused:
        plan.errors.append(
            "cannot delete Pods that declare no controller (use --force to override): "
            + ", ".join(unmanaged_refused)
        )
    if local_refused:
        plan.errors.append(
            "cannot delete Pods with local storage (use --delete-emptydir-data to override): "
            + ", ".join(local_refused)
        )
    if daemons:
        plan.warnings.append(f"ignoring DaemonSet-managed Pods: {', '.join(daemons)}")
    if unmanaged:
        plan.warnings.append(f"deleting Pods that declare no controller: {', '.join(unmanaged)}")
    if local:
        plan.warnings.append(f"deleting Pods with local storage: {', '.join(local)}")
    return plan


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration (``60s``, ``1m30s``, ``500ms``; ``0`` alone) in seconds, as kubectl's ``--timeout``."""
    text = text.strip()
    if text in ("0", "0s"):
        return 0.0
    if not text or _DURATION_PART.sub("", text):
        raise CliError(f'invalid duration "{text}": use a number with a unit, like 60s, 2m or 1m30s')
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


# ------------------------------------------------------------------------------------------ IO


async def _set_unschedulable(transport: HttpTransport, node: str, value: bool) -> bool:
    """Patch ``spec.unschedulable``; returns False when the node already was in that state."""
    current = await transport.get(NODES, None, node)
    if bool(_d(current.get("spec")).get("unschedulable")) == value:
        return False
    body = {"spec": {"unschedulable": True if value else None}}
    await transport.patch(NODES, None, node, "application/strategic-merge-patch+json", body)
    return True


def _eviction_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/eviction"


async def _evict_and_wait(
    transport: HttpTransport, pod: JSON, deadline: float | None, printer: Printer, grace: int | None
) -> None:
    namespace, name = str(_meta(pod).get("namespace")), str(_meta(pod).get("name"))
    uid = _meta(pod).get("uid")
    body: JSON = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    }
    if grace is not None and grace >= 0:
        body["deleteOptions"] = {"gracePeriodSeconds": grace}
    printer.line(f"evicting pod {namespace}/{name}")
    while True:
        try:
            await transport.request("POST", _eviction_path(namespace, name), body=body)
            break
        except ApiError as exc:
            if exc.code == 404:
                printer.line(f"pod/{name} evicted")
                return
            if exc.code != 429:
                raise CliError(f'error when evicting pods/"{name}" -n "{namespace}": {exc.message}') from exc
            causes = "; ".join(c.message for c in exc.causes if c.message)
            detail = f"{exc.message} ({causes})" if causes else exc.message
            printer.error(
                f'error when evicting pods/"{name}" -n "{namespace}" '
                f"(will retry after {EVICTION_RETRY_SECONDS:g}s): {detail}"
            )
            if deadline is not None and time.monotonic() + EVICTION_RETRY_SECONDS > deadline:
                raise CliError(
                    f'error when evicting pods/"{name}" -n "{namespace}": global timeout reached: {detail}'
                ) from exc
            await asyncio.sleep(EVICTION_RETRY_SECONDS)
    while True:
        try:
            current = await transport.get(PODS, namespace, name)
        except ApiError as exc:
            if exc.code != 404:
                raise
            break
        if _meta(current).get("uid") != uid:
            break
        if deadline is not None and time.monotonic() >= deadline:
            raise CliError(
                f'error when waiting for pod "{name}" in namespace "{namespace}" to terminate: '
                "global timeout reached"
            )
        await asyncio.sleep(POLL_SECONDS)
    printer.line(f"pod/{name} evicted")


async def drain_node(
    transport: HttpTransport,
    node: str,
    options: DrainOptions,
    timeout_seconds: float,
    printer: Printer,
    grace: int | None = None,
) -> None:
    deadline = time.monotonic() + timeout_seconds if timeout_seconds > 0 else None
    changed = await _set_unschedulable(transport, node, True)
    printer.line(f"node/{node} {'cordoned' if changed else 'already cordoned'}")
    listed = await transport.list(PODS, None, field_selector=f"spec.nodeName={node}")
    plan = plan_drain(listed.items, options)
    if plan.errors:
        raise CliError(f'unable to drain node "{node}" due to error: {"; ".join(plan.errors)}')
    for warning in plan.warnings:
        printer.error(f"Warning: {warning}")
    results = await asyncio.gather(
        *(_evict_and_wait(transport, pod, deadline, printer, grace) for pod in plan.evict),
        return_exceptions=True,
    )
    failures = [str(r) for r in results if isinstance(r, BaseException)]
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, CliError | ApiError):
            raise result
    if failures:
        raise CliError(f'unable to drain node "{node}" due to error: {"; ".join(failures)}')
    printer.line(f"node/{node} drained")


async def taint_node(transport: HttpTransport, node: str, changes: TaintChanges, overwrite: bool) -> str:
    """Write the new taints with compare-and-set; retried when the node changed meanwhile."""
    for _ in range(8):
        current = await transport.get(NODES, None, node)
        taints, verb = apply_taint_changes(
            node, _d(current.get("spec")).get("taints") or [], changes, overwrite
        )
        patch = {
            "metadata": {"resourceVersion": _meta(current).get("resourceVersion")},
            "spec": {"taints": taints or None},
        }
        try:
            await transport.patch(NODES, None, node, "application/merge-patch+json", patch)
        except ApiError as exc:
            if exc.reason == "Conflict":
                continue
            raise
        return verb
    raise CliError(f"node {node} kept changing; try again")


# ------------------------------------------------------------------------------------------ commands


def _mark(
    ctx: typer.Context, node: str, unschedulable: bool, kubeconfig: str | None, context: str | None
) -> None:
    """Set ``spec.unschedulable`` and print kubectl's line (``node/N cordoned`` / ``already cordoned``)."""
    options = cluster_options(ctx, kubeconfig, context)
    word = "cordoned" if unschedulable else "uncordoned"

    async def _go() -> None:
        async with connected(options) as (transport, _):
            changed = await _set_unschedulable(transport, node, unschedulable)
        Printer().line(f"node/{node} {word if changed else 'already ' + word}")

    run(_go())


def cordon(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node to mark unschedulable.")],
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Mark a node unschedulable: nothing new is placed there; running pods stay."""
    _mark(ctx, node, True, kubeconfig, context)


def uncordon(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node to mark schedulable again.")],
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Mark a node schedulable again."""
    _mark(ctx, node, False, kubeconfig, context)


def drain(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node to drain.")],
    timeout: Annotated[
        str, typer.Option("--timeout", help="Give up after this long (e.g. 60s, 5m; 0: wait forever).")
    ] = "0s",
    force: Annotated[
        bool, typer.Option("--force", help="Also evict pods that no controller manages.")
    ] = False,
    ignore_daemonsets: Annotated[
        bool, typer.Option("--ignore-daemonsets", help="Leave DaemonSet-managed pods alone.")
    ] = False,
    delete_emptydir_data: Annotated[
        bool, typer.Option("--delete-emptydir-data", help="Evict pods whose emptyDir data will be lost.")
    ] = False,
    grace_period: Annotated[
        int, typer.Option("--grace-period", help="Seconds each pod gets to stop (-1: the pod's own).")
    ] = -1,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Cordon a node, then evict its pods, respecting PodDisruptionBudgets."""
    seconds = parse_duration(timeout)
    options = cluster_options(ctx, kubeconfig, context)
    drain_options = DrainOptions(force, ignore_daemonsets, delete_emptydir_data)

    async def _go() -> None:
        async with connected(options) as (transport, _):
            await drain_node(transport, node, drain_options, seconds, Printer(), grace_period)

    run(_go())


def taint(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="nodes (node, no)", metavar="nodes")],
    node: Annotated[str, typer.Argument(help="The node.")],
    taints: Annotated[list[str], typer.Argument(help="key[=value]:Effect to add, key[:Effect]- to remove.")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a taint with the same key and effect.")
    ] = False,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Add or remove taints on a node (effects: NoSchedule, PreferNoSchedule, NoExecute)."""
    if kind not in ("nodes", "node", "no"):
        raise CliError(f'taint applies to nodes only, not "{kind}"')
    changes = parse_taint_args(taints)
    options = cluster_options(ctx, kubeconfig, context)

    async def _go() -> None:
        async with connected(options) as (transport, _):
            verb = await taint_node(transport, node, changes, overwrite)
        Printer().line(f"node/{node} {verb}")

    run(_go())


def register(app: typer.Typer) -> None:
    app.command("cordon")(cordon)
    app.command("uncordon")(uncordon)
    app.command("drain")(drain)
    app.command("taint")(taint)


__all__ = [
    "DrainOptions",
    "Taint",
    "TaintChanges",
    "apply_taint_changes",
    "parse_duration",
    "parse_taint_args",
    "plan_drain",
    "register",
]
