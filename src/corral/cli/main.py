"""The ``corral`` command: a typer app assembling the verb modules, and :func:`main`, the console script.

``main`` is the one place that turns failures into what the user sees: a single ``error: ...`` or
``Error from server (...)`` line on stderr and a non-zero exit; never a traceback (set ``CORRAL_DEBUG=1``
to get one). Verb modules: ``up`` (server), ``kubeconfig``, ``resources`` (apply/get/delete), ``describe``,
``pods`` (logs/exec), ``rollout`` (rollout status/history/undo/restart/pause/resume, scale),
``agent`` (join a node), ``server`` (control plane only), ``token`` (join tokens), ``top`` (resource
usage).
"""

from __future__ import annotations

import os
import sys

import typer

from corral.cli import (
    agent,
    autoscale,
    create,
    describe,
    kubeconfig,
    nodes,
    pods,
    resources,
    rollout,
    secrets,
    server,
    token,
    top,
    up,
)
from corral.cli.errors import CliError, error_line
from corral.cli.output import Printer
from corral.cli.session import ClusterOptions, ContextOption, KubeconfigOption

app = typer.Typer(
    name="corral",
    help="Corral: a small orchestrator that speaks the Kubernetes API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global_options(
    ctx: typer.Context, kubeconfig: KubeconfigOption = None, context: ContextOption = None
) -> None:
    """Corral: a small orchestrator that speaks the Kubernetes API."""
    ctx.obj = ClusterOptions(kubeconfig, context)


up.register(app)
kubeconfig.register(app)
resources.register(app)
create.register(app)
describe.register(app)
pods.register(app)
rollout.register(app)
agent.register(app)
server.register(app)
token.register(app)
secrets.register(app)
top.register(app)
autoscale.register(app)
nodes.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits with the command's status."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")  # a C-locale terminal must not turn "—" into a traceback
    try:
        app(args=argv, prog_name="corral")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("CORRAL_DEBUG"):
            raise
        Printer().error(error_line(exc))
        sys.exit(exc.exit_code if isinstance(exc, CliError) else 1)


if __name__ == "__main__":
    main()
