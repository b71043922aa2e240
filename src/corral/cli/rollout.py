"""``corral rollout status|history|undo|restart|pause|resume``, ``corral scale``, and the waiting behind
``corral apply --wait``: the IO around :mod:`corral.cli.rolloutplan`.

Each command reads what kubectl reads (the Deployment, its ReplicaSets by the Deployment's selector, the
Scale subresource), lets the pure module decide, and sends the one write kubectl sends (a JSON patch for
undo, strategic merge patches for pause/resume/restart, a merge patch or a precondition-checked PUT of the
Scale). Waiting (``rollout status``, ``apply --wait``) is a LIST with ``fieldSelector=metadata.name=…``
then a WATCH from the list's resourceVersion, re-established when the server ends it or answers 410.

``apply --wait`` shows progress as a rich live table on a terminal; when stdout is not a terminal it prints
plain status lines instead (one per change), so logs and pipes never see escape codes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from corral.api.printing.labels import selector_string
from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver.status import ApiError
from corral.cli.errors import CliError, api_error_line, is_connection_error
from corral.cli.output import JSON, Printer, make_console
from corral.cli.pods import parse_duration
from corral.cli.rolloutplan import (
    WAITABLE_KINDS,
    Phase,
    Progress,
    check_scale,
    deleted,
    deployment_status,
    history,
    history_output,
    parse_targets,
    pause_patch,
    progress_of,
    restart_patch,
    resume_patch,
    rollback,
    timed_out,
    validate_replicas,
)
from corral.cli.session import (
    ContextOption,
    KubeconfigOption,
    NamespaceOption,
    cluster_options,
    connected,
    object_name,
    resolve_kind,
    run,
)
from corral.client import HttpTransport

FIELD_MANAGER = "corral-rollout"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
MERGE = "application/merge-patch+json"
WATCH_SECONDS = 300  # a watch the server holds this long is re-established (resumes from its last version)
SCALE_RETRIES = 5
DEPLOYMENTS = REGISTRY.require("deployments")
T = TypeVar("T")
REPLICA_SETS = REGISTRY.require("replicasets")

TargetArgs = Annotated[
    list[str] | None,
    typer.Argument(help="deployment/NAME, or deployment NAME...", metavar="RESOURCE", show_default=False),
]


def timeout_seconds(text: str, flag: str = "--timeout") -> float:
    """A Go duration flag (``30s``, ``5m``, ``0`` = no limit) in seconds, refused in kubectl's words."""
    try:
        seconds = parse_duration(text)
    except CliError:
        raise CliError(
            f'invalid argument "{text}" for "{flag}" flag: time: invalid duration "{text}"'
        ) from None
    if seconds < 0:
        raise CliError(f'invalid argument "{text}" for "{flag}" flag: the duration must not be negative')
    return seconds


def _deployment_names(args: Sequence[str] | None, unsupported: str) -> list[str]:
    """The Deployment names among the arguments; ``unsupported`` words the refusal of any other kind."""
    names = []
    for target in parse_targets(list(args or [])):
        rt = resolve_kind(target.kind)
        if rt.kind != "Deployment":
            raise CliError(unsupported.format(kind=f"{rt.kind}.{rt.group}" if rt.group else rt.kind))
        names.append(target.name)
    return names


class Failures:
    """Per-object failures, kubectl style: one line each, carry on with the other objects, exit 1 at the
    end. A connection failure is re-raised because no other object can succeed."""

    def __init__(self, printer: Printer) -> None:
        self.printer = printer
        self.count = 0

    def report(self, exc: ApiError | CliError) -> None:
        if isinstance(exc, ApiError) and is_connection_error(exc):
            raise exc
        self.count += 1
        self.printer.error(api_error_line(exc) if isinstance(exc, ApiError) else f"error: {exc}")

    def exit_if_any(self) -> None:
        if self.count:
            raise typer.Exit(1)


async def _replica_sets(transport: HttpTransport, d: JSON) -> list[JSON]:
    """The ReplicaSets kubectl lists for a Deployment: its namespace, by the Deployment's selector."""
    meta = d.get("metadata") or {}
    selector = selector_string((d.get("spec") or {}).get("selector"))
    listed = await transport.list(REPLICA_SETS, meta.get("namespace"), label_selector=selector or None)
    return listed.items


def _each(
    ctx: typer.Context,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    targets: Sequence[T],
    act: Callable[[HttpTransport, str, T], Awaitable[str]],
) -> None:
    """Run ``act`` for every target over one connection and print what it returns; a target that fails
    is reported (kubectl's one line) and the others still run; exit 1 at the end if any failed."""
    options = cluster_options(ctx, kubeconfig, context)
    printer = Printer()
    failures = Failures(printer)

    async def _run() -> None:
        async with connected(options) as (transport, access):
            ns = namespace or access.namespace
            for target in targets:
                try:
                    text = await act(transport, ns, target)
                except (ApiError, CliError) as exc:
                    failures.report(exc)
                    continue
                printer.text(text)

    run(_run())
    failures.exit_if_any()


# --- following one object ------------------------------------------------------------------------------


async def follow(
    transport: HttpTransport, rt: ResourceType, ns: str | None, name: str
) -> AsyncIterator[JSON | None]:
    """Every state of one object: the current one, then one per change; None once it is gone (and then
    nothing more). A LIST pins the starting resourceVersion so no change between reads is missed."""
    field_selector = f"metadata.name={name}"
    while True:  # (re)list
        listed = await transport.list(rt, ns, field_selector=field_selector)
        obj = next((o for o in listed.items if (o.get("metadata") or {}).get("name") == name), None)
        yield obj
        if obj is None:
            return
        version = listed.resource_version
        try:
            while True:  # (re)watch from the last version seen
                events = transport.watch(
                    rt,
                    ns,
                    resource_version=version,
                    field_selector=field_selector,
                    timeout_seconds=WATCH_SECONDS,
                )
                async for event in events:
                    version = str((event.obj.get("metadata") or {}).get("resourceVersion") or version)
                    if event.type == "BOOKMARK":
                        continue
                    if event.type == "DELETED":
                        yield None
                        return
                    yield event.obj
        except ApiError as exc:
            if exc.code != 410:  # 410 Gone: our version left the server's history; list again
                raise


# --- rollout status ------------------------------------------------------------------------------------


async def _status_one(
    transport: HttpTransport, ns: str, name: str, printer: Printer, *, watch: bool, revision: int
) -> None:
    await transport.get(DEPLOYMENTS, ns, name)  # NotFound is reported before any waiting, as kubectl does
    last = ""
    async for d in follow(transport, DEPLOYMENTS, ns, name):
        if d is None:
            raise CliError("object has been deleted")
        view = deployment_status(d, revision)
        # kubectl prints on every watch event; repeating an unchanged line tells the user nothing.
        if view.message != last:
            printer.line(view.message)
            last = view.message
        if view.done or not watch:
            return


def status(
    ctx: typer.Context,
    resources: TargetArgs = None,
    watch: Annotated[
        bool, typer.Option("--watch/--no-watch", "-w", help="Wait until the rollout finishes.")
    ] = True,
    revision: Annotated[
        int, typer.Option("--revision", help="Pin to a revision (0: the latest).", min=0)
    ] = 0,
    timeout: Annotated[
        str, typer.Option("--timeout", help="Give up after this long (0: never), e.g. 5m.")
    ] = "0s",
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Show the status of a rollout, and wait for it to finish.

    Exits non-zero if the Deployment exceeds its progress deadline or the timeout passes first.
    """
    seconds = timeout_seconds(timeout)
    names = _deployment_names(resources, "no status viewer has been implemented for {kind}")
    options = cluster_options(ctx, kubeconfig, context)
    printer = Printer()

    async def _run() -> None:
        async with connected(options) as (transport, access):
            for name in names:
                try:
                    async with asyncio.timeout(seconds or None):  # per object, as kubectl's context
                        await _status_one(
                            transport,
                            namespace or access.namespace,
                            name,
                            printer,
                            watch=watch,
                            revision=revision,
                        )
                except TimeoutError:
                    raise CliError("timed out waiting for the condition") from None

    run(_run())


# --- rollout history -----------------------------------------------------------------------------------


def history_command(
    ctx: typer.Context,
    resources: TargetArgs = None,
    revision: Annotated[
        int, typer.Option("--revision", help="Show the pod template of this revision.", min=0)
    ] = 0,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """List a Deployment's revisions with their change-cause, or show one revision's pod template."""
    names = _deployment_names(resources, 'no history viewer has been implemented for "{kind}"')

    async def show(transport: HttpTransport, ns: str, name: str) -> str:
        d = await transport.get(DEPLOYMENTS, ns, name)
        revisions = history(d, await _replica_sets(transport, d))
        return history_output(object_name(DEPLOYMENTS, name), revisions, revision)

    _each(ctx, kubeconfig, context, namespace, names, show)


# --- rollout undo --------------------------------------------------------------------------------------


def undo(
    ctx: typer.Context,
    resources: TargetArgs = None,
    to_revision: Annotated[
        int, typer.Option("--to-revision", help="The revision to go back to (0: the previous one).")
    ] = 0,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Roll back to the previous revision, or to --to-revision.

    The Deployment gets that revision's pod template again, and the controller scales its ReplicaSet back up.
    """
    names = _deployment_names(resources, 'no rollbacker has been implemented for "{kind}"')

    async def roll_back(transport: HttpTransport, ns: str, name: str) -> str:
        d = await transport.get(DEPLOYMENTS, ns, name)
        plan = rollback(d, await _replica_sets(transport, d), to_revision)
        if plan.patch is not None:
            await transport.patch(DEPLOYMENTS, ns, name, JSON_PATCH, plan.patch, field_manager=FIELD_MANAGER)
        return f"{object_name(DEPLOYMENTS, name)} {plan.outcome}\n"

    _each(ctx, kubeconfig, context, namespace, names, roll_back)


# --- rollout restart, pause, resume --------------------------------------------------------------------


def _restart(d: JSON) -> JSON:
    return restart_patch(d, datetime.now(UTC), DEPLOYMENTS.group_resource)  # the CLI is an edge: our clock


def _pause(d: JSON) -> JSON:
    return pause_patch(d, DEPLOYMENTS.group_resource)


def _resume(d: JSON) -> JSON:
    return resume_patch(d, DEPLOYMENTS.group_resource)


def _patch_command(
    verb: str, gerund: str, make_patch: Callable[[JSON], JSON], doc: str
) -> Callable[..., None]:
    """A command that reads each Deployment, asks ``make_patch`` for a strategic merge patch (or its
    refusal) and sends it, printing ``deployment.apps/<name> <verb>`` as kubectl does."""

    def command(
        ctx: typer.Context,
        resources: TargetArgs = None,
        namespace: NamespaceOption = None,
        kubeconfig: KubeconfigOption = None,
        context: ContextOption = None,
    ) -> None:
        names = _deployment_names(resources, f"{gerund} is not supported for {{kind}}")

        async def send(transport: HttpTransport, ns: str, name: str) -> str:
            d = await transport.get(DEPLOYMENTS, ns, name)
            await transport.patch(
                DEPLOYMENTS, ns, name, STRATEGIC, make_patch(d), field_manager=FIELD_MANAGER
            )
            return f"{object_name(DEPLOYMENTS, name)} {verb}\n"

        _each(ctx, kubeconfig, context, namespace, names, send)

    command.__doc__ = doc  # typer shows it as the command's help
    return command


restart = _patch_command(
    "restarted",
    "restarting",
    _restart,
    "Restart every pod by a rolling update (sets kubectl.kubernetes.io/restartedAt on the template).",
)
pause = _patch_command(
    "paused",
    "pausing",
    _pause,
    "Pause a Deployment: template changes wait until it is resumed (scaling works).",
)
resume = _patch_command(
    "resumed", "resuming", _resume, "Resume a paused Deployment: changes made meanwhile roll out."
)


# --- scale ---------------------------------------------------------------------------------------------


async def _scale_one(
    transport: HttpTransport, rt: ResourceType, ns: str, name: str, replicas: int, current: int | None
) -> None:
    if current is None:
        await transport.patch(rt, ns, name, MERGE, {"spec": {"replicas": replicas}}, subresource="scale")
        return
    for _ in range(SCALE_RETRIES):
        scale = await transport.get(rt, ns, name, "scale")
        try:
            await transport.update(rt, ns, name, check_scale(scale, replicas, current), subresource="scale")
            return
        except ApiError as exc:
            if exc.reason != "Conflict":  # someone wrote in between: read again and check again
                raise
    raise CliError(f"could not scale {object_name(rt, name)}: too many concurrent writers; retry")


def scale(
    ctx: typer.Context,
    resources: TargetArgs = None,
    replicas: Annotated[
        int | None, typer.Option("--replicas", help="The new number of replicas.", show_default=False)
    ] = None,
    current_replicas: Annotated[
        int | None,
        typer.Option(
            "--current-replicas",
            help="Only scale if the current number of replicas is this (a precondition).",
            show_default=False,
        ),
    ] = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Set the number of replicas of Deployments or ReplicaSets (through their scale subresource)."""
    wanted = validate_replicas(replicas)
    targets = []
    for target in parse_targets(list(resources or [])):
        rt = resolve_kind(target.kind)
        if rt.subresource("scale") is None:
            raise CliError(f"cannot scale {rt.group_resource}: it has no scale subresource")
        targets.append((rt, target.name))

    async def scale_one(transport: HttpTransport, ns: str, target: tuple[ResourceType, str]) -> str:
        rt, name = target
        await _scale_one(transport, rt, ns, name, wanted, current_replicas)
        return f"{object_name(rt, name)} scaled\n"

    _each(ctx, kubeconfig, context, namespace, targets, scale_one)


# --- apply --wait --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Waited:
    """An object ``apply`` wrote that ``--wait`` follows."""

    rt: ResourceType
    namespace: str | None
    name: str


def waitable(rt: ResourceType) -> bool:
    return rt.kind in WAITABLE_KINDS


_PHASE_STYLES = {
    Phase.PROGRESSING: "yellow",
    Phase.PAUSED: "magenta",
    Phase.SUSPENDED: "magenta",
    Phase.COMPLETE: "green",
    Phase.FAILED: "red",
    Phase.DELETED: "red",
    Phase.TIMED_OUT: "red",
}


def progress_table(rows: Sequence[tuple[str, Progress]], elapsed: float, limit: float) -> RenderableType:
    """The live view: one row per object with a bar of finished replicas or completions."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("NAME", "PROGRESS", "COUNTS", "PHASE"):
        table.add_column(column, no_wrap=True)
    for name, p in rows:
        style = _PHASE_STYLES[p.phase]
        bar = ProgressBar(
            total=max(p.desired, 1),
            completed=p.done if p.desired else 1,
            width=24,
            complete_style="red" if p.phase in (Phase.FAILED, Phase.TIMED_OUT) else "cyan",
            finished_style="green",
        )
        table.add_row(name, bar, p.summary, Text(p.phase.value, style=style))
    waited = f"waited {elapsed:.0f}s" + (f" of {limit:.0f}s" if limit else "")
    return Group(table, Text(waited, style="dim"))


class _Waiter:
    """Follows several objects at once; ``states`` holds each one's latest :class:`Progress`."""

    def __init__(
        self, transport: HttpTransport, objects: Sequence[Waited], printer: Printer, live: bool
    ) -> None:
        self.transport = transport
        self.objects = list(objects)
        self.printer = printer
        self.live = live
        self.states: dict[Waited, tuple[str, Progress]] = {}
        for w in self.objects:
            initial = Progress(w.rt.kind, w.name, Phase.PROGRESSING, 0, 0, (), "Waiting...")
            self.states[w] = (object_name(w.rt, w.name), initial)

    def _update(self, w: Waited, progress: Progress) -> None:
        label, before = self.states[w]
        self.states[w] = (label, progress)
        # Plain output: a line per change; failures are left to the final ``error:`` lines (stderr).
        if (
            not self.live
            and progress.message != before.message
            and (progress.phase.ok or not progress.phase.finished)
        ):
            self.printer.line(progress.message)

    async def follow_one(self, w: Waited) -> None:
        async for obj in follow(self.transport, w.rt, w.namespace, w.name):
            current = self.states[w][1]
            progress = deleted(current) if obj is None else progress_of(w.rt.kind, obj)
            self._update(w, progress)
            if progress.phase.finished:
                return

    async def run(self, limit: float) -> None:
        tasks = [asyncio.create_task(self.follow_one(w)) for w in self.objects]
        try:
            done, _pending = await asyncio.wait(tasks, timeout=limit or None)
            for task in done:
                task.result()  # a failure to talk to the server is the command's failure
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for w in self.objects:
            label, progress = self.states[w]
            if not progress.phase.finished:
                self.states[w] = (label, timed_out(progress))

    def rows(self) -> list[tuple[str, Progress]]:
        return list(self.states.values())


async def wait_for(
    transport: HttpTransport, objects: Sequence[Waited], printer: Printer, limit: float
) -> bool:
    """Wait until every Deployment has rolled out and every Job has completed, one of them failed for
    good, or ``limit`` seconds (0: no limit) passed. Prints progress and the outcome; True when all
    succeeded."""
    if not objects:
        return True
    console = make_console(printer.out)
    live = console.is_terminal and not console.is_dumb_terminal
    waiter = _Waiter(transport, objects, printer, live)
    started = time.monotonic()
    if live:
        with Live(
            get_renderable=lambda: progress_table(waiter.rows(), time.monotonic() - started, limit),
            console=console,
            refresh_per_second=4,
            transient=False,
        ):
            await waiter.run(limit)
    else:
        await waiter.run(limit)
    return _report_outcome(waiter.rows(), printer, console if live else None)


def _report_outcome(rows: Sequence[tuple[str, Progress]], printer: Printer, console: Console | None) -> bool:
    ok = True
    for _, progress in rows:
        if progress.phase.ok:
            if console is not None:  # plain output printed it already as the last progress line
                printer.line(progress.message)
        else:
            ok = False
            printer.error(f"error: {progress.message}")
    return ok


def register(app: typer.Typer) -> None:
    rollout_app = typer.Typer(
        name="rollout",
        help="Manage the rollout of Deployments: status, history, undo, restart, pause, resume.",
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    rollout_app.command("status")(status)
    rollout_app.command("history")(history_command)
    rollout_app.command("undo")(undo)
    rollout_app.command("restart")(restart)
    rollout_app.command("pause")(pause)
    rollout_app.command("resume")(resume)
    app.add_typer(rollout_app)
    app.command()(scale)


__all__ = ["Failures", "Waited", "register", "timeout_seconds", "wait_for", "waitable"]
