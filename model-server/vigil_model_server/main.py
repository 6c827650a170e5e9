"""`vigil-model-server`: parse the settings, then serve with uvicorn (uvloop, httptools) until SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

from vigil_model_server.app import build_app
from vigil_model_server.protocol.http import header_limited_protocol
from vigil_model_server.redaction import redact_logs
from vigil_model_server.settings import Settings, parse_settings


def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT: stop accepting, finish requests in flight, then return."""
    config = uvicorn.Config(
        build_app(settings),
        # A comma-separated list binds each address ("0.0.0.0,::": IPv4 and IPv6); "::" alone is IPv6 only.
        # uvicorn types `host` as one str but hands it to asyncio's create_server, which binds a list.
        host=hosts if len(hosts := settings.host.split(",")) > 1 else settings.host,  # type: ignore[arg-type]
        port=settings.port,
        loop="uvloop",
        http=header_limited_protocol(settings.max_header_bytes),
        limit_concurrency=settings.max_concurrency or None,
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        # Typed int, used as asyncio.wait_for's timeout: fractional seconds work.
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,  # type: ignore[arg-type]
    )
    # uvicorn re-raises the stop signal once it has shut down; exit 0 then, as after any
    # signal that arrives before uvicorn listens for them.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    uvicorn.Server(config).run()


def _exit_cleanly(signum: int, _: FrameType | None) -> None:
    logging.getLogger("vigil_model_server").info("stopped by %s", signal.Signals(signum).name)
    sys.exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    settings = parse_settings(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The model URI may carry credentials; no log line shows them, whoever writes it (httpx logs
    # every request's URL).
    redact_logs(logging.getLogger().handlers)
    serve(settings)


if __name__ == "__main__":
    main()
