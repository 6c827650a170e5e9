"""The server's lifecycle: live at once, ready once the model has loaded in the background."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading

from vigil_model_server.errors import ApiError, not_found
from vigil_model_server.loader import LoadedModel, LoadError, load_model
from vigil_model_server.metrics import Metrics
from vigil_model_server.service import ModelService
from vigil_model_server.settings import Settings

log = logging.getLogger("vigil_model_server")


class ServerState:
    """Holds the ModelService once loading succeeded, or the reason it failed."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.service: ModelService | None = None
        self.load_error: str | None = None

    def start_loading(self) -> None:
        """Load the model in a daemon thread, so probes get answers meanwhile and SIGTERM is not held up."""
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._load, args=(loop,), name="model-loader", daemon=True).start()

    def not_ready_reason(self) -> str:
        """Why the model cannot serve yet, in a sentence."""
        if self.load_error is not None:
            return f"model not loaded: {self.load_error}"
        return "the model is still loading"

    def service_for(self, name: str, version: str | None) -> ModelService:
        """The service for model `name` (and `version`): 404 if not served here, 503 if not ready."""
        self.check_served(name, version)
        if self.service is None:
            raise ApiError(503, self.not_ready_reason())
        return self.service

    def check_served(self, name: str, version: str | None) -> None:
        """404 unless this server serves model `name` at `version` (any version if None)."""
        served_name, served_version = self.settings.model_name, self.settings.model_version
        if name != served_name:
            raise not_found(f"model {name!r} is not served here; this server serves {served_name!r}")
        if version is not None and version != served_version:
            raise not_found(
                f"model {name!r} has no version {version!r} here; this server serves {served_version!r}"
            )

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        settings = self.settings
        try:
            model = load_model(settings.model_uri, settings.sha256, settings.skops_trusted_types)
        except LoadError as error:
            self._report(loop, str(error))
            return
        except Exception as error:
            log.exception("unexpected error while loading %s", settings.model_uri)
            self._report(loop, f"{settings.model_uri}: {type(error).__name__}: {error}")
            return
        # RuntimeError: the server stopped while the model was loading.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._serve, model)

    def _report(self, loop: asyncio.AbstractEventLoop, reason: str) -> None:
        log.error("model not loaded, server stays unready: %s", reason)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(setattr, self, "load_error", reason)

    def _serve(self, model: LoadedModel) -> None:
        self.service = ModelService(model, self.settings, self.metrics)
        # The ~100k objects of scikit-learn, numpy and the model live as long as the process; a
        # full garbage collection walking them takes tens of milliseconds, a latency spike in
        # some request. Frozen, collections skip them.
        gc.freeze()
        predictor = self.service.predictor
        log.info(
            "model %s version %s ready: %s (%s, sha256 %s, %s features, outputs %s)",
            self.settings.model_name,
            self.settings.model_version,
            model.source,
            model.format,
            model.sha256,
            predictor.n_features if predictor.n_features is not None else "any number of",
            ", ".join(predictor.outputs),
        )
