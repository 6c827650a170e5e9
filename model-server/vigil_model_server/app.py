"""HTTP wiring: Starlette routes to plain handler functions, JSON in and out, metrics per endpoint."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version as package_version
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from vigil_model_server.auth import FeedbackToken
from vigil_model_server.errors import ApiError, malformed, not_found, too_large
from vigil_model_server.metrics import CONTENT_TYPE, Metrics
from vigil_model_server.mirror import Mirror
from vigil_model_server.predictor import PREDICT
from vigil_model_server.protocol import v1, v2
from vigil_model_server.protocol.mirror import parse_mirror_request
from vigil_model_server.settings import Settings
from vigil_model_server.state import ServerState

log = logging.getLogger("vigil_model_server")

Handler = Callable[[Request], Awaitable[Response]]

# After a 413 the server still reads (and drops) up to this much of the body, for this long, before
# it closes the connection: a client that sends its whole body before reading gets the 413, where
# closing with unread bytes would make the kernel reset the connection under it.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 5.0


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """`content` as JSON; numpy arrays are written by orjson directly."""
    body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The Open Inference Protocol's error document."""
    return json_response({"error": message}, status, headers)


def require_json(request: Request) -> None:
    """415 unless the body is declared `application/json`.

    A browser sends a cross-site form (urlencoded, multipart, text/plain) without asking first;
    requiring JSON makes it ask (a CORS preflight), which this server never grants.
    """
    declared = request.headers.get("content-type", "")
    if declared.partition(";")[0].strip().lower() != "application/json":
        shown = repr(declared) if declared else "none"
        message = f"send the body as JSON with Content-Type: application/json (the request had {shown})"
        raise ApiError(415, message)


BODY_READ = "vigil.body_read"


async def read_json(request: Request, limit: int) -> object:
    """The body parsed as JSON: 415 unless declared as JSON, 413 past `limit` bytes, 400 if not JSON."""
    require_json(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise malformed("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    request.scope[BODY_READ] = True  # a 413 for too many rows then has nothing to drain
    try:
        return orjson.loads(chunks[0] if len(chunks) == 1 else b"".join(chunks))
    except orjson.JSONDecodeError as error:
        raise malformed(f"the body is not valid JSON: {error}") from None


def _too_large(size: int, limit: int) -> ApiError:
    return too_large(f"the body has {size}+ bytes; the limit is {limit} (MAX_BODY_BYTES); send fewer rows")


def build_app(settings: Settings, metrics: Metrics | None = None) -> ASGIApp:
    """The ASGI application serving `settings.model_uri`; the model loads when the app starts."""
    metrics = metrics or Metrics(
        settings.model_name,
        settings.model_version,
        mirroring=settings.mirror_url is not None,
        stable_version=settings.stable_version,
    )
    token = FeedbackToken(settings.feedback_token_file)
    mirror = Mirror(settings, metrics, token.current) if settings.mirror_url is not None else None
    state = ServerState(settings, metrics, mirror=mirror)
    handlers = _Handlers(state, token)

    def route(path: str, endpoint: str, handler: Handler, method: str) -> Route:
        return Route(path, _Endpoint(endpoint, handler, state.metrics), methods=[method])

    versioned = "/v2/models/{name}/versions/{version}"
    # The router tries routes in order: the busiest first.
    routes = [
        route("/v2/models/{name}/infer", "infer", handlers.infer, "POST"),
        route("/v1/models/{name}:predict", "v1_predict", handlers.v1_predict, "POST"),
        route("/v2/models/{name}/feedback", "feedback", handlers.feedback, "POST"),
        route(f"{versioned}/infer", "infer", handlers.infer, "POST"),
        route(f"{versioned}/feedback", "feedback", handlers.feedback, "POST"),
        route("/v2/models/{name}/mirror", "mirror", handlers.mirror, "POST"),
        route("/v2/health/live", "live", handlers.live, "GET"),
        route("/v2/health/ready", "ready", handlers.ready, "GET"),
        route("/metrics", "metrics", handlers.metrics, "GET"),
        route("/v2", "server_metadata", handlers.server_metadata, "GET"),
        route("/v2/models/{name}", "model_metadata", handlers.model_metadata, "GET"),
        route(versioned, "model_metadata", handlers.model_metadata, "GET"),
        route("/v2/models/{name}/ready", "model_ready", handlers.model_ready, "GET"),
        route(f"{versioned}/ready", "model_ready", handlers.model_ready, "GET"),
        route("/v1/models/{name}", "v1_model", handlers.v1_model, "GET"),
    ]

    @asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[None]:
        if settings.feedback_token_file is None:
            log.warning(
                "feedback is unauthenticated: anyone who reaches /feedback can label predictions and so "
                "decide rollouts; set --feedback-token-file (MODEL_FEEDBACK_TOKEN_FILE)"
            )
        _warn_about_shadow_settings(settings)
        state.start_loading()
        if mirror is not None:
            await mirror.start()
        yield
        if mirror is not None:
            await mirror.close()
        log.info("stopped serving %s version %s", settings.model_name, settings.model_version)

    router = Router(routes=routes, lifespan=lifespan)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette's Router without Starlette's application around it: every endpoint answers
        # its own errors, so the application's two exception middlewares would only add cost
        # (about a tenth of a small request). With "app" in the scope, the Router raises
        # HTTPException for unknown paths and methods instead of answering in plain text.
        scope["app"] = app
        try:
            await router(scope, receive, send)
        except HTTPException as error:
            state.metrics.observe_request("unmatched", error.status_code, None)
            await _unmatched_response(scope, error, settings.model_name)(scope, receive, send)

    return app


def _warn_about_shadow_settings(settings: Settings) -> None:
    """Shadow needs the feedback token on both sides: say so at start, not only in failed counts."""
    if settings.feedback_token_file is not None:
        return
    if settings.mirror_url is not None:
        log.warning(
            "mirroring to %s without a feedback token: the candidate refuses unauthenticated copies; "
            "set --feedback-token-file (MODEL_FEEDBACK_TOKEN_FILE) to the candidate's token",
            settings.mirror_url,
        )
    if settings.stable_version is not None:
        log.warning(
            "shadow candidate without a feedback token: every mirrored request is refused (403); "
            "set --feedback-token-file (MODEL_FEEDBACK_TOKEN_FILE)"
        )


def _unmatched_response(scope: Scope, error: HTTPException, model_name: str) -> Response:
    request = Request(scope)
    if error.status_code == 405:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}")
    message = f"no endpoint at {request.url.path}; see /v2/models/{model_name} for the model"
    return error_response(error.status_code, message)


class _Endpoint:
    """An ASGI app around `handler`: ApiError becomes its JSON answer; duration and status are counted.

    An ASGI app rather than a function, so Starlette calls it without its per-request wrappers.
    """

    def __init__(self, name: str, handler: Handler, metrics: Metrics) -> None:
        self._name = name
        self._handler = handler
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = Request(scope, receive)
        try:
            response = await self._handler(request)
        except ApiError as error:
            response = error_response(error.status, error.message, error.headers)
        except Exception:
            log.exception("internal error on %s %s", request.method, request.url.path)
            response = error_response(500, "internal error; the server log has the details")
        self._metrics.observe_request(self._name, response.status_code, time.perf_counter() - started)
        if response.status_code == 413:
            await _answer_then_drain(response, request, send)
        else:
            await response(scope, receive, send)


async def _answer_then_drain(response: Response, request: Request, send: Send) -> None:
    """Send `response` (413), read and drop the rest of the body within bounds, then close.

    A client that asked `Expect: 100-continue` has sent nothing yet and reads the 413 instead.
    """
    response.headers["connection"] = "close"
    start = {"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers}
    await send(start)
    await send({"type": "http.response.body", "body": response.body, "more_body": True})
    unread = not request.scope.get(BODY_READ)
    if unread and request.headers.get("expect", "").lower() != "100-continue":
        drained = 0
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                while drained < LINGER_BYTES:
                    message = await request.receive()
                    drained += len(message.get("body", b""))
                    if message["type"] == "http.disconnect" or not message.get("more_body", False):
                        break
        except TimeoutError:
            pass
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Handlers:
    """One method per endpoint: parse with a protocol adapter, call the service, format the answer."""

    def __init__(self, state: ServerState, token: FeedbackToken) -> None:
        self._state = state
        self._token = token
        self._settings = state.settings
        self._version = package_version("vigil-model-server")

    async def live(self, _: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, _: Request) -> Response:
        if self._state.service is not None:
            return json_response({"ready": True})
        return json_response({"ready": False, "error": self._state.not_ready_reason()}, 503)

    async def server_metadata(self, _: Request) -> Response:
        return json_response(
            {"name": "vigil-model-server", "version": self._version, "extensions": ["feedback"]}
        )

    async def model_metadata(self, request: Request) -> Response:
        params = request.path_params
        service = self._state.service_for(params["name"], params.get("version"))
        settings = self._settings
        return json_response(
            v2.model_metadata(settings.model_name, settings.model_version, service.predictor)
        )

    async def model_ready(self, request: Request) -> Response:
        params = request.path_params
        self._state.check_served(params["name"], params.get("version"))
        if self._state.service is not None:
            return json_response({"name": params["name"], "ready": True})
        return json_response(
            {"name": params["name"], "ready": False, "error": self._state.not_ready_reason()}, 503
        )

    async def infer(self, request: Request) -> Response:
        params = request.path_params
        service = self._state.service_for(params["name"], params.get("version"))
        parsed = v2.parse_infer_request(await read_json(request, self._settings.max_body_bytes))
        inference = await service.infer(parsed.rows, parsed.outputs, parsed.request_id)
        settings = self._settings
        return json_response(
            v2.infer_response(
                settings.model_name, settings.model_version, inference.response_id, inference.outputs
            )
        )

    async def feedback(self, request: Request) -> Response:
        params = request.path_params
        service = self._state.service_for(params["name"], params.get("version"))
        self._token.check(request.headers.get("authorization"))
        parsed = v2.parse_feedback_request(await read_json(request, self._settings.max_body_bytes))
        if parsed.rows is not None:
            scored = await service.feedback_for_rows(parsed.rows, parsed.labels)
        else:
            assert parsed.response_id is not None
            scored = service.feedback_for_id(parsed.response_id, parsed.labels)
        return json_response(
            {
                "model_name": self._settings.model_name,
                "model_version": self._settings.model_version,
                "labelled": scored.labelled,
                "correct": scored.correct,
                "accuracy": scored.accuracy,
            }
        )

    async def mirror(self, request: Request) -> Response:
        stable_version = self._settings.stable_version
        if stable_version is None:
            raise not_found(
                "this server is not a shadow candidate (it has no STABLE_VERSION), so it takes no mirrored "
                "requests"
            )
        service = self._state.service_for(request.path_params["name"], None)
        if not self._token.required:
            raise ApiError(
                403,
                "mirrored requests need the feedback token and this server has none: set "
                "--feedback-token-file (MODEL_FEEDBACK_TOKEN_FILE) on both releases",
            )
        self._token.check(request.headers.get("authorization"))
        payload = await read_json(request, self._settings.max_body_bytes)
        mirrored = parse_mirror_request(payload, stable_version)
        recorded = await service.record_mirrored(mirrored)
        return json_response(
            {
                "model_name": self._settings.model_name,
                "model_version": self._settings.model_version,
                "stable_version": stable_version,
                "recorded": recorded,
                "known": len(mirrored.ids) - recorded,
            }
        )

    async def v1_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._state.check_served(name, None)
        return json_response(v1.model_status(name, self._state.service is not None))

    async def v1_predict(self, request: Request) -> Response:
        service = self._state.service_for(request.path_params["name"], None)
        rows = v1.parse_predict_request(await read_json(request, self._settings.max_body_bytes))
        inference = await service.infer(rows, (PREDICT,), None)
        return json_response(v1.predict_response(inference.response_id, inference.outputs[PREDICT]))

    async def metrics(self, _: Request) -> Response:
        return Response(self._state.metrics.exposition(), media_type=CONTENT_TYPE)
