"""Run a Corral API server in its own process for tests and benchmarks: ``python -m corral.testing.serve``.

Prints one line ``READY <url> <kubeconfig>`` on stdout once it accepts connections, then
``DATAPLANE dns=HOST:PORT ingress=HOST:PORT`` (``-`` when off), then serves until SIGTERM/SIGINT.
Independent of the CLI so tests of the server do not depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from corral.server import CorralServer, ServerConfig
from corral.util.gctune import tune_for_service


async def _main(args: argparse.Namespace) -> None:
    server = CorralServer(
        ServerConfig(
            data_dir=Path(args.data_dir),
            host=args.host,
            port=args.port,
            store=args.store,
            max_pods=args.max_pods,
            dns_port=None if args.dns_port < 0 else args.dns_port,
            ingress_port=None if args.ingress_port < 0 else args.ingress_port,
            volume_mode=args.volume_mode,
            metrics_interval=args.metrics_interval,
            hpa_sync_period=args.hpa_sync_period,
            readiness_warmup=not args.kubelet_probe_timing,
            agent=not args.no_agent,
        )
    )
    await server.start()
    tune_for_service()  # as `corral up` does, so benchmarks measure what users run
    print(f"READY {server.url} {server.kubeconfig_path}", flush=True)
    print(f"DATAPLANE dns={server.dns_address or '-'} ingress={server.ingress_address or '-'}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--store", default=None)
    parser.add_argument("--max-pods", type=int, default=110)
    parser.add_argument("--dns-port", type=int, default=0, help="0 picks a free port, -1 turns DNS off")
    parser.add_argument("--ingress-port", type=int, default=0, help="0 picks a free port, -1 turns it off")
    parser.add_argument("--volume-mode", default="auto", choices=["auto", "namespace", "sandbox"])
    parser.add_argument("--metrics-interval", type=float, default=5.0, help="seconds between usage samples")
    parser.add_argument("--hpa-sync-period", type=float, default=5.0, help="seconds between HPA syncs")
    parser.add_argument(
        "--kubelet-probe-timing", action="store_true", help="no 50 ms readiness warm-up (benchmarks)"
    )
    parser.add_argument(
        "--no-agent", action="store_true", help="control plane only: no built-in node (scheduler benchmarks)"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            asyncio.run(_main(args))
        else:
            # Outside the try: an ImportError raised while serving must not start a second server.
            uvloop.run(_main(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
