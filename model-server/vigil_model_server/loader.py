"""Fetch a model file, check its sha256, deserialise it and check it is a fitted estimator.

Runs once, in a background thread, so the server answers liveness probes while it works.
The file is read (or downloaded) into memory once, and the bytes that were hashed are the bytes
that are deserialised: nothing is opened again by path after the checksum, so a file swapped
meanwhile cannot run. scikit-learn is imported here and not at start-up: importing it takes
about a second.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from vigil_model_server.object_store import (
    ObjectLocation,
    ObjectStoreError,
    ObjectStoreUnavailable,
    parse_object_uri,
    read_capped,
    read_object,
    too_large,
)
from vigil_model_server.redaction import redact_text, redact_uri

JOBLIB_SUFFIXES = (".joblib", ".pkl", ".pickle")
SKOPS_SUFFIXES = (".skops",)
# Names looked for when the URI is a directory (the KServe and MLServer convention).
DIRECTORY_CANDIDATES = ("model.joblib", "model.pkl", "model.pickle", "model.skops")
MAX_REDIRECTS = 10
FILE_CHUNK_BYTES = 1024 * 1024
# Waits between download attempts: 0.5 s, 1 s, 2 s, ... up to 30 s, each with jitter, so the
# replicas of a Deployment do not all knock on a store that is coming back at the same moment.
FIRST_RETRY_DELAY_SECONDS = 0.5
LONGEST_RETRY_DELAY_SECONDS = 30.0
# Answers that may be different a moment later; any other status is final.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Where the operator mounts the claim of a pvc://CLAIM/PATH model (read-only), one folder per claim.
DEFAULT_PVC_ROOT = "/var/lib/vigil/pvc"


class LoadError(Exception):
    """The model cannot be served; the message says which file and why, in one line."""


class StoreUnavailable(LoadError):
    """The model store did not answer (refused, timed out, 5xx): it may later, so worth a retry."""


@dataclass(frozen=True)
class LoadOptions:
    """What a model file must satisfy and how long and how much fetching it may take."""

    sha256: str | None = None
    skops_trusted: tuple[str, ...] = ()
    allow_unpinned_pickle: bool = False
    max_bytes: int = 2 * 1024**3
    download_timeout_seconds: float = 300.0
    download_retry_seconds: float = 300.0
    pvc_root: str = DEFAULT_PVC_ROOT


DEFAULT_OPTIONS = LoadOptions()


@dataclass(frozen=True)
class LoadedModel:
    """A fitted estimator and where it came from (`source` is the URI without its secrets)."""

    estimator: Any
    source: str
    format: str
    sha256: str


def load_model(
    uri: str,
    options: LoadOptions = DEFAULT_OPTIONS,
    on_retry: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
) -> LoadedModel:
    """Load the model at `uri` (file://, a path, a directory, http(s)://, s3://, gs:// or pvc://).

    The checksum is compared before anything is deserialised. A download that fails for a reason
    that may pass is retried with backoff for `options.download_retry_seconds`; `on_retry` gets
    each failure, and StoreUnavailable is raised once that time is up. Raises LoadError.
    """
    shown = redact_uri(uri)
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        model_format = _format_of(shown, parts.path)
        _check_pinned(shown, model_format, options)
        content = _with_retries(lambda: _download(uri, shown, options), options, on_retry, sleep)
    elif scheme in ("s3", "gs"):
        try:
            location = parse_object_uri(uri)
        except ValueError as error:
            raise LoadError(f"{shown}: {error}") from None
        model_format = _format_of(shown, location.key)
        _check_pinned(shown, model_format, options)
        content = _with_retries(lambda: _read_object(location, options), options, on_retry, sleep)
    elif scheme in ("", "file", "pvc"):
        if scheme == "pvc":
            path = _pvc_file(uri, shown, options.pvc_root)
        else:
            path = _model_file(_local_path(uri, shown), shown)
        model_format = _format_of(shown, path.name)
        _check_pinned(shown, model_format, options)
        content = _read_file(shown, path, options)
    else:
        raise LoadError(
            f"{shown}: unsupported URI scheme {scheme + '://'!r}; use file://, a path, http://, https://, "
            "s3://, gs:// or pvc://"
        )
    digest = _sha256_hex(content)
    if options.sha256 is not None and digest != options.sha256:
        raise LoadError(
            f"{shown}: sha256 mismatch: expected {options.sha256}, file has {digest}; refusing to load"
        )
    estimator = _deserialise(shown, content, model_format, options.skops_trusted)
    _check_estimator(shown, estimator)
    return LoadedModel(estimator=estimator, source=shown, format=model_format, sha256=digest)


def _check_pinned(shown: str, model_format: str, options: LoadOptions) -> None:
    if model_format == "joblib" and options.sha256 is None and not options.allow_unpinned_pickle:
        raise LoadError(
            f"{shown}: loading a joblib or pickle file runs code from it, so it needs its sha256 "
            "(--sha256, MODEL_SHA256, spec.model.sha256); save it with skops instead, or allow "
            "unpinned pickles with --allow-unpinned-pickle (MODEL_ALLOW_UNPINNED_PICKLE=true)"
        )


def _sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _local_path(uri: str, shown: str) -> Path:
    if uri.lower().startswith("file:"):
        parts = urllib.parse.urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise LoadError(
                f"{shown}: file:// URIs must name a local file (file:///path), not host {parts.netloc!r}"
            )
        return Path(urllib.parse.unquote(parts.path))
    return Path(uri)


def _pvc_file(uri: str, shown: str, pvc_root: str) -> Path:
    """pvc://CLAIM/PATH as the model file under `pvc_root`/CLAIM, where the operator mounts the
    claim; a path that leads out of the claim's folder (`..`, a symlink) is refused."""
    parts = urllib.parse.urlsplit(uri)
    claim, inside = parts.netloc, urllib.parse.unquote(parts.path).lstrip("/")
    if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", claim) or not inside:
        raise LoadError(
            f"{shown}: pvc:// URIs name a claim and a path in it: pvc://CLAIM/PATH "
            "(CLAIM a PersistentVolumeClaim's name)"
        )
    if parts.query or parts.fragment:
        raise LoadError(f"{shown}: pvc:// URIs take no query string or fragment")
    claim_dir = Path(pvc_root) / claim
    if not claim_dir.is_dir():
        raise LoadError(
            f"{shown}: the claim is not mounted at {claim_dir} (the operator mounts pvc:// claims there; "
            "MODEL_PVC_ROOT moves it)"
        )
    path = _inside_claim(shown, claim_dir, claim_dir / inside)
    return _inside_claim(shown, claim_dir, _model_file(path, shown))


def _inside_claim(shown: str, claim_dir: Path, path: Path) -> Path:
    try:
        resolved = path.resolve()
        within = resolved.is_relative_to(claim_dir.resolve())
    except (OSError, RuntimeError) as error:
        raise LoadError(f"{shown}: cannot resolve the path in the claim: {error}") from None
    if not within:
        raise LoadError(f"{shown}: the path leads out of the claim's folder {claim_dir}; refusing to read it")
    return resolved


def _model_file(path: Path, shown: str) -> Path:
    """`path` itself, or the one model file in it when it is a directory."""
    if path.is_dir():
        found = [path / name for name in DIRECTORY_CANDIDATES if (path / name).is_file()]
        if len(found) != 1:
            what = "no" if not found else "more than one"
            raise LoadError(
                f"{shown}: directory has {what} model file; expected one of {', '.join(DIRECTORY_CANDIDATES)}"
            )
        path = found[0]
    if not path.is_file():
        raise LoadError(f"{shown}: no such file ({path})")
    return path


def _read_file(shown: str, path: Path, options: LoadOptions) -> bytes:
    """The whole file, read once through one open file, in chunks: refused past `max_bytes`, given
    up at the download deadline (a claim on a network filesystem can be as slow as any store)."""
    deadline = time.monotonic() + options.download_timeout_seconds
    content = bytearray()
    try:
        with path.open("rb") as file:
            while chunk := file.read(min(FILE_CHUNK_BYTES, options.max_bytes + 1 - len(content))):
                content += chunk
                if len(content) > options.max_bytes:
                    raise LoadError(f"{shown}: {too_large(options.max_bytes)}")
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        f"{shown}: reading did not finish within {options.download_timeout_seconds:g} s "
                        "(MODEL_DOWNLOAD_TIMEOUT_SECONDS)"
                    )
    except OSError as error:
        raise LoadError(f"{shown}: cannot read {path}: {error.strerror}") from error
    return bytes(content)


def _read_object(location: ObjectLocation, options: LoadOptions) -> bytes:
    try:
        return read_object(
            location, max_bytes=options.max_bytes, timeout_seconds=options.download_timeout_seconds
        )
    except ObjectStoreUnavailable as error:
        raise StoreUnavailable(str(error)) from None
    except ObjectStoreError as error:
        raise LoadError(str(error)) from None


def _with_retries(
    fetch: Callable[[], bytes],
    options: LoadOptions,
    on_retry: Callable[[str], None],
    sleep: Callable[[float], None],
) -> bytes:
    """`fetch()`, again with backoff while it raises StoreUnavailable, for `download_retry_seconds`."""
    started = time.monotonic()
    give_up_at = started + options.download_retry_seconds
    attempt = 1
    while True:
        try:
            return fetch()
        except StoreUnavailable as error:
            ceiling = min(LONGEST_RETRY_DELAY_SECONDS, FIRST_RETRY_DELAY_SECONDS * 2 ** (attempt - 1))
            delay = random.uniform(ceiling / 2, ceiling)
            if time.monotonic() + delay > give_up_at:
                elapsed = time.monotonic() - started
                raise StoreUnavailable(
                    f"{error}; gave up after {attempt} attempt(s) in {elapsed:.0f} s "
                    f"(MODEL_DOWNLOAD_RETRY_SECONDS={options.download_retry_seconds:g})"
                ) from error
            on_retry(f"{error}; attempt {attempt} failed, retrying in {delay:.1f} s")
            sleep(delay)
            attempt += 1


def _download(url: str, shown: str, options: LoadOptions) -> bytes:
    """The body of `url`, within one deadline for the whole transfer, redirects included."""
    deadline = time.monotonic() + options.download_timeout_seconds
    too_slow = StoreUnavailable(
        f"{shown}: download did not finish within {options.download_timeout_seconds:g} s "
        "(MODEL_DOWNLOAD_TIMEOUT_SECONDS)"
    )
    # Compressed answers are refused (read raw, a small gzip bomb would pass any size cap).
    with httpx.Client(follow_redirects=False, headers={"Accept-Encoding": "identity"}) as client:
        # Per-read timeouts cannot bound a store that drips its headers or body; closing the
        # client at the deadline does, whatever it is waiting for.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            client.close()

        watchdog = threading.Timer(options.download_timeout_seconds, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            return _follow(shown, client, client.build_request("GET", url), options, deadline, too_slow)
        except (httpx.HTTPError, RuntimeError, OSError) as error:
            if expired.is_set():
                raise too_slow from error
            if isinstance(error, httpx.TimeoutException):
                raise too_slow from error
            if isinstance(error, httpx.TransportError | OSError):
                raise StoreUnavailable(f"{shown}: download failed: {_describe(error)}") from error
            raise LoadError(f"{shown}: download failed: {_describe(error)}") from error
        finally:
            watchdog.cancel()


def _follow(
    shown: str,
    client: httpx.Client,
    request: httpx.Request,
    options: LoadOptions,
    deadline: float,
    too_slow: StoreUnavailable,
) -> bytes:
    """Redirects followed by hand (never from https to http), then the body."""
    for _ in range(MAX_REDIRECTS + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise too_slow
        request.extensions["timeout"] = httpx.Timeout(remaining).as_dict()
        response = client.send(request, stream=True)
        try:
            if response.next_request is not None:
                request = _redirect(shown, request, response.next_request)
                continue
            _check_status(shown, request, response)
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise LoadError(
                    f"{shown}: download failed: the store answered {encoding!r}-encoded; "
                    "only uncompressed files are read"
                )
            return _read_body(shown, response, options.max_bytes, deadline, too_slow)
        finally:
            response.close()
    raise LoadError(f"{shown}: download failed: more than {MAX_REDIRECTS} redirects")


def _redirect(shown: str, request: httpx.Request, target: httpx.Request) -> httpx.Request:
    # Following https to http would hand the file, and so code to run, to anyone on the path.
    if request.url.scheme == "https" and target.url.scheme != "https":
        raise LoadError(
            f"{shown}: download failed: refusing a redirect from https to {target.url.scheme}:// "
            f"({redact_uri(str(target.url))})"
        )
    return target


def _check_status(shown: str, request: httpx.Request, response: httpx.Response) -> None:
    if response.status_code == 200:
        return
    where = "" if redact_uri(str(request.url)) == shown else f" from {redact_uri(str(request.url))}"
    message = f"{shown}: download failed: HTTP {response.status_code}{where}"
    if response.status_code in TRANSIENT_STATUSES:
        raise StoreUnavailable(message)
    raise LoadError(message)


def _read_body(
    shown: str, response: httpx.Response, max_bytes: int, deadline: float, too_slow: StoreUnavailable
) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise LoadError(f"{shown}: {too_large(max_bytes)}")
    too_big = LoadError(f"{shown}: {too_large(max_bytes)}")
    return read_capped(response.iter_raw(), max_bytes, deadline, too_big, too_slow)


def _describe(error: Exception) -> str:
    return redact_text(str(error)) or type(error).__name__


def _format_of(shown: str, name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in JOBLIB_SUFFIXES:
        return "joblib"
    if suffix in SKOPS_SUFFIXES:
        return "skops"
    supported = ", ".join(JOBLIB_SUFFIXES + SKOPS_SUFFIXES)
    raise LoadError(f"{shown}: unsupported model format {suffix or '(no suffix)'!r}; supported: {supported}")


def _deserialise(shown: str, content: bytes, model_format: str, skops_trusted: tuple[str, ...]) -> Any:
    if model_format == "skops":
        return _load_skops(shown, content, skops_trusted)
    import joblib

    try:
        return joblib.load(io.BytesIO(content))
    # Unpickling can raise anything (a missing module, a truncated file, a class's own error).
    except Exception as error:
        raise LoadError(f"{shown}: not a readable joblib file: {type(error).__name__}: {error}") from error


def _load_skops(shown: str, content: bytes, skops_trusted: tuple[str, ...]) -> Any:
    try:
        import skops.io
    except ImportError as error:
        raise LoadError(
            f"{shown}: .skops files need the skops package (pip install vigil-model-server[skops])"
        ) from error
    try:
        untrusted = skops.io.get_untrusted_types(data=content)
    except Exception as error:
        raise LoadError(f"{shown}: not a readable skops file: {type(error).__name__}: {error}") from error
    refused = sorted(set(untrusted) - set(skops_trusted))
    if refused:
        raise LoadError(
            f"{shown}: skops file contains types that are not trusted: {', '.join(refused)}; "
            "if you trust them, list them in --skops-trusted-types"
        )
    try:
        return skops.io.loads(content, trusted=list(untrusted))
    except Exception as error:
        raise LoadError(f"{shown}: not a readable skops file: {type(error).__name__}: {error}") from error


def _check_estimator(shown: str, estimator: Any) -> None:
    if not callable(getattr(estimator, "predict", None)):
        raise LoadError(f"{shown}: holds a {type(estimator).__qualname__}, not an estimator with predict()")
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError as error:
        raise LoadError(
            f"{shown}: the {type(estimator).__qualname__} is not fitted; fit it before saving"
        ) from error
    except TypeError:
        # Not a scikit-learn estimator (no fit()); it has predict(), which is all we call.
        pass
