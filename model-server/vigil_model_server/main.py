"""`vigil-model-server`: parse the settings, then serve with uvicorn (uvloop, httptools) until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vigil_model_server.app import build_app
from vigil_model_server.protocol.http import header_limited_protocol
from vigil_model_server.redaction import redact_logs
from vigil_model_server.settings import Settings, parse_settings


class ClosingWhenDraining:
    """ASGI wrapper: once draining, every response says `connection: close` (uvicorn then closes it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.draining = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if self.draining and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


class DrainingServer(uvicorn.Server):
    """Stop like a pod behind a Service should: keep-alive connections end on the server's answer.

    uvicorn's own shutdown closes idle keep-alive connections at once, so a client that writes its
    next request on one at that moment gets no response at all. Here the listener closes first, then
    each open connection gets its next response with `connection: close` (or reaches uvicorn's
    keep-alive timeout when idle) before uvicorn's shutdown runs, within the graceful shutdown time.
    """

    def __init__(self, config: uvicorn.Config, app: ClosingWhenDraining) -> None:
        super().__init__(config)
        self.closing = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        self.closing.draining = True
        budget = float(self.config.timeout_graceful_shutdown or 0)
        deadline = time.monotonic() + budget
        while self.server_state.connections and not self.force_exit and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.config.timeout_graceful_shutdown = max(0.0, deadline - time.monotonic())  # type: ignore[assignment]
        await super().shutdown(sockets)


def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT: stop accepting, finish requests and connections, then return."""
    app = ClosingWhenDraining(build_app(settings))
    config = uvicorn.Config(
        app,
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
    DrainingServer(config, app).run()


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
