"""Every setting of the server in one typed object, read from flags or environment once."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vigil_model_server.loader import DEFAULT_PVC_ROOT


@dataclass(frozen=True)
class Settings:
    """What the server serves and how; see docs/model-server.md for each setting."""

    model_uri: str
    model_name: str
    model_version: str
    sha256: str | None = None
    allow_unpinned_pickle: bool = False
    max_model_bytes: int = 2 * 1024**3
    download_timeout_seconds: float = 300.0
    download_retry_seconds: float = 300.0
    pvc_root: str = DEFAULT_PVC_ROOT
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 4 * 1024 * 1024
    batching: bool = True
    batch_max_size: int = 64
    batch_max_wait_ms: float = 2.0
    accuracy_window: int = 1000
    feedback_cache_size: int = 100_000
    skops_trusted_types: tuple[str, ...] = ()
    graceful_shutdown_seconds: float = 25.0
    log_level: str = "info"
    feedback_token_file: str | None = None
    max_feedback_rows: int = 1000
    max_infer_rows: int = 10_000
    max_header_bytes: int = 16384
    max_concurrency: int = 0  # 0: no limit (uvicorn counts idle connections too, probes included)
    mirror_url: str | None = None  # a shadow candidate's base URL: mirror predictions and labels there
    mirror_queue_size: int = 1024
    mirror_timeout_seconds: float = 2.0
    stable_version: str | None = None  # set: this server is a shadow candidate paired with that version


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be at least 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a TCP port (0-65535), got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(f"must be a number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be a number > 0, got {text}")
    return value


def _sha256(text: str) -> str | None:
    if not text:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise ValueError("must be 64 hexadecimal digits (the output of sha256sum)")
    return text.lower()


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {text!r}")


def _type_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _log_level(text: str) -> str:
    lowered = text.lower()
    if lowered not in ("debug", "info", "warning", "error"):
        raise ValueError(f"must be debug, info, warning or error, got {text!r}")
    return lowered


def _mirror_url(text: str) -> str | None:
    """An http(s) base URL without a trailing slash; empty means no mirroring."""
    if not text:
        return None
    if not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", text):
        raise ValueError(
            f"must be an http:// or https:// base URL, like http://10.96.12.34:8080; got {text!r}"
        )
    return text.rstrip("/")


def _optional(text: str) -> str | None:
    return text or None


def _non_empty(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


# (flag, environment variable, field, parser, help); the flag wins over the variable.
_OPTIONS: list[tuple[str, str, str, Callable[[str], Any], str]] = [
    (
        "--model-uri",
        "MODEL_URI",
        "model_uri",
        _non_empty,
        "the model: file:// URI or path, http(s)://, s3://bucket/key, gs://bucket/object or pvc://claim/path",
    ),
    ("--model-name", "MODEL_NAME", "model_name", _non_empty, "name the model is served and labelled as"),
    ("--model-version", "MODEL_VERSION", "model_version", _non_empty, "version label of the model"),
    ("--sha256", "MODEL_SHA256", "sha256", _sha256, "refuse to load a model file with another sha256"),
    (
        "--allow-unpinned-pickle",
        "MODEL_ALLOW_UNPINNED_PICKLE",
        "allow_unpinned_pickle",
        _boolean,
        "load a joblib or pickle file without --sha256 (it runs code from the file)",
    ),
    (
        "--max-model-bytes",
        "MODEL_MAX_BYTES",
        "max_model_bytes",
        _positive_int,
        "largest model file loaded (default 2 GiB)",
    ),
    (
        "--download-timeout-seconds",
        "MODEL_DOWNLOAD_TIMEOUT_SECONDS",
        "download_timeout_seconds",
        _positive_float,
        "deadline for a whole model download (default 300)",
    ),
    (
        "--download-retry-seconds",
        "MODEL_DOWNLOAD_RETRY_SECONDS",
        "download_retry_seconds",
        _non_negative_float,
        "how long to retry an unavailable model store before exiting with status 3 (default 300)",
    ),
    (
        "--model-pvc-root",
        "MODEL_PVC_ROOT",
        "pvc_root",
        _non_empty,
        f"where pvc://CLAIM/PATH finds its claim mounted, as ROOT/CLAIM (default {DEFAULT_PVC_ROOT})",
    ),
    ("--host", "HOST", "host", _non_empty, "address to listen on (default 0.0.0.0)"),
    ("--port", "PORT", "port", _port, "port to listen on (default 8080)"),
    ("--max-body-bytes", "MAX_BODY_BYTES", "max_body_bytes", _positive_int, "largest request body accepted"),
    ("--batching", "BATCHING", "batching", _boolean, "coalesce concurrent requests (default true)"),
    ("--batch-max-size", "BATCH_MAX_SIZE", "batch_max_size", _positive_int, "rows per predict call, at most"),
    (
        "--batch-max-wait-ms",
        "BATCH_MAX_WAIT_MS",
        "batch_max_wait_ms",
        _non_negative_float,
        "longest a request waits for others to join its batch",
    ),
    (
        "--accuracy-window",
        "ACCURACY_WINDOW",
        "accuracy_window",
        _positive_int,
        "labelled rows in the accuracy",
    ),
    (
        "--feedback-cache-size",
        "FEEDBACK_CACHE_SIZE",
        "feedback_cache_size",
        _positive_int,
        "predicted rows kept for feedback by id",
    ),
    (
        "--skops-trusted-types",
        "SKOPS_TRUSTED_TYPES",
        "skops_trusted_types",
        _type_list,
        "comma-separated extra types a .skops file may contain",
    ),
    (
        "--graceful-shutdown-seconds",
        "GRACEFUL_SHUTDOWN_SECONDS",
        "graceful_shutdown_seconds",
        _non_negative_float,
        "how long in-flight requests may take after SIGTERM",
    ),
    ("--log-level", "LOG_LEVEL", "log_level", _log_level, "debug, info, warning or error"),
    (
        "--feedback-token-file",
        "MODEL_FEEDBACK_TOKEN_FILE",
        "feedback_token_file",
        _non_empty,
        "file holding the bearer token /feedback requires (unauthenticated without it)",
    ),
    (
        "--max-feedback-rows",
        "MODEL_MAX_FEEDBACK_ROWS",
        "max_feedback_rows",
        _positive_int,
        "labels per feedback request, at most (default 1000)",
    ),
    (
        "--max-infer-rows",
        "MODEL_MAX_INFER_ROWS",
        "max_infer_rows",
        _positive_int,
        "rows per inference request, at most (default 10000)",
    ),
    (
        "--max-header-bytes",
        "MAX_HEADER_BYTES",
        "max_header_bytes",
        _positive_int,
        "request line and headers, at most (default 16384; larger get 431)",
    ),
    (
        "--max-concurrency",
        "MAX_CONCURRENCY",
        "max_concurrency",
        _non_negative_int,
        "open connections, idle ones included, at most; more get 503, probes too (default 0: no limit)",
    ),
    (
        "--mirror-url",
        "MIRROR_URL",
        "mirror_url",
        _mirror_url,
        "base URL of a shadow candidate to mirror predictions and labels to (default: no mirroring)",
    ),
    (
        "--mirror-queue-size",
        "MIRROR_QUEUE_SIZE",
        "mirror_queue_size",
        _positive_int,
        "rows waiting to be mirrored, at most; more are dropped and counted (default 1024)",
    ),
    (
        "--mirror-timeout-seconds",
        "MIRROR_TIMEOUT_SECONDS",
        "mirror_timeout_seconds",
        _positive_float,
        "deadline for one post to the shadow candidate (default 2)",
    ),
    (
        "--stable-version",
        "STABLE_VERSION",
        "stable_version",
        _optional,
        "serve as a shadow candidate paired with this stable version (enables /mirror)",
    ),
]

_REQUIRED = ("model_uri", "model_name", "model_version")


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from command-line flags, falling back to environment variables, then defaults.

    Exits with status 2 and a message naming the flag and the variable on a bad or missing value.
    """
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="vigil-model-server",
        description="Serve a scikit-learn model over the Open Inference Protocol (V2) and KServe V1.",
    )
    for flag, variable, name, convert, help_text in _OPTIONS:
        # A yes/no flag alone means yes: `--allow-unpinned-pickle` as `--allow-unpinned-pickle true`.
        optional: dict[str, Any] = {"nargs": "?", "const": "true"} if convert is _boolean else {}
        parser.add_argument(
            flag, dest=name, metavar=variable, help=f"{help_text} [env {variable}]", **optional
        )
    arguments = vars(parser.parse_args(argv))

    values: dict[str, Any] = {}
    for flag, variable, name, convert, _ in _OPTIONS:
        raw, origin = arguments[name], flag
        if raw is None and variable in environ:
            raw, origin = environ[variable], f"environment variable {variable}"
        if raw is None:
            if name in _REQUIRED:
                parser.error(f"{flag} (or environment variable {variable}) is required")
            continue
        try:
            values[name] = convert(raw)
        except ValueError as error:
            parser.error(f"{origin}: {error}")
    return Settings(**values)
