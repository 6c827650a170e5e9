"""The server's lifecycle: live at once, ready once the model has loaded in the background.

A model that cannot be served for a reason a restart would not change (a checksum mismatch, an
unpinned pickle, a file that is not an estimator, a failed warm-up) leaves the server live and
not ready, its readiness saying why. A model store that stays unavailable past the retry time
ends the process with status 3, so that the kubelet restarts the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
from collections.abc import Callable

from vigil_model_server.errors import ApiError, not_found
from vigil_model_server.loader import LoadedModel, LoadError, LoadOptions, StoreUnavailable, load_model
from vigil_model_server.metrics import Metrics
from vigil_model_server.mirror import Mirror
from vigil_model_server.redaction import redact_text, redact_uri
from vigil_model_server.service import ModelService
from vigil_model_server.settings import Settings

log = logging.getLogger("vigil_model_server")

# The exit status when the model store stayed unavailable (2 is a bad setting).
EXIT_STORE_UNAVAILABLE = 3


def load_options(settings: Settings) -> LoadOptions:
    """The loader's options from the server's settings."""
    return LoadOptions(
        sha256=settings.sha256,
        skops_trusted=settings.skops_trusted_types,
        allow_unpinned_pickle=settings.allow_unpinned_pickle,
        max_bytes=settings.max_model_bytes,
        download_timeout_seconds=settings.download_timeout_seconds,
        download_retry_seconds=settings.download_retry_seconds,
        pvc_root=settings.pvc_root,
    )


class ServerState:
    """Holds the ModelService once loading succeeded, or the reason it failed."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        exit_process: Callable[[int], object] = os._exit,
        mirror: Mirror | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.mirror = mirror
        self.service: ModelService | None = None
        self.load_error: str | None = None
        self.retrying_because: str | None = None
        # os._exit, not sys.exit: the loader runs in its own thread, and nothing needs draining
        # in a server that never was ready.
        self._exit_process = exit_process

    def start_loading(self) -> None:
        """Load the model in a daemon thread, so probes get answers meanwhile and SIGTERM is not held up."""
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._load, args=(loop,), name="model-loader", daemon=True).start()

    def not_ready_reason(self) -> str:
        """Why the model cannot serve yet, in a sentence."""
        if self.load_error is not None:
            return f"model not loaded: {self.load_error}"
        if self.retrying_because is not None:
            return f"the model is still loading: {self.retrying_because}"
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
        shown = redact_uri(self.settings.model_uri)

        def retrying(reason: str) -> None:
            log.warning("model store unavailable, retrying: %s", reason)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(setattr, self, "retrying_because", reason)

        try:
            model = load_model(self.settings.model_uri, load_options(self.settings), retrying)
        except StoreUnavailable as error:
            log.error(
                "model store unavailable, exiting with status %d so that the pod restarts: %s",
                EXIT_STORE_UNAVAILABLE,
                error,
            )
            self._exit_process(EXIT_STORE_UNAVAILABLE)
            return
        except LoadError as error:
            self._report(loop, str(error))
            return
        except Exception as error:
            log.exception("unexpected error while loading %s", shown)
            self._report(loop, f"{shown}: {type(error).__name__}: {redact_text(str(error))}")
            return
        # RuntimeError: the server stopped while the model was loading.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._serve, model)

    def _report(self, loop: asyncio.AbstractEventLoop, reason: str) -> None:
        log.error("model not loaded, server stays unready: %s", reason)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(setattr, self, "load_error", reason)

    def _serve(self, model: LoadedModel) -> None:
        try:
            self.service = ModelService(model, self.settings, self.metrics, self.mirror)
        # The warm-up calls the model: a model pickled by another scikit-learn version can fail
        # there with anything (AttributeError, IndexError, ...). Readiness must say so.
        except Exception as error:
            import sklearn

            reason = (
                f"{model.source}: the model fails its warm-up prediction: {type(error).__name__}: "
                f"{redact_text(str(error))} (this server has scikit-learn {sklearn.__version__}; "
                "a model saved with another version can fail so)"
            )
            log.error("model not loaded, server stays unready: %s", reason, exc_info=True)
            self.load_error = reason
            return
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
