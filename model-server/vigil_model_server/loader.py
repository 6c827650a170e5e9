"""Fetch a model file, check its sha256, deserialise it and check it is a fitted estimator.

Runs once, in a background thread, so the server answers liveness probes while it works.
scikit-learn is imported here and not at start-up: importing it takes about a second.
"""

from __future__ import annotations

import hashlib
import io
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

JOBLIB_SUFFIXES = (".joblib", ".pkl", ".pickle")
SKOPS_SUFFIXES = (".skops",)
# Names looked for when the URI is a directory (the KServe and MLServer convention).
DIRECTORY_CANDIDATES = ("model.joblib", "model.pkl", "model.pickle", "model.skops")
DOWNLOAD_TIMEOUT_SECONDS = 120.0


class LoadError(Exception):
    """The model cannot be served; the message says which file and why, in one line."""


@dataclass(frozen=True)
class LoadedModel:
    """A fitted estimator and where it came from."""

    estimator: Any
    source: str
    format: str
    sha256: str


def load_model(
    uri: str, expected_sha256: str | None = None, skops_trusted: tuple[str, ...] = ()
) -> LoadedModel:
    """Load the model at `uri` (file://, a path, a directory or http(s)://).

    The checksum is compared before anything is deserialised. Raises LoadError.
    """
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    source: Path | bytes
    if scheme in ("http", "https"):
        model_format = _format_of(uri, urllib.parse.urlsplit(uri).path)
        source = _download(uri)
        digest = hashlib.sha256(source).hexdigest()
    elif scheme in ("", "file"):
        source = _local_path(uri)
        model_format = _format_of(uri, source.name)
        digest = _file_sha256(uri, source)
    else:
        raise LoadError(
            f"{uri}: unsupported URI scheme {scheme + '://'!r}; use file://, a path, http:// or https:// "
            "(copy objects from S3 or GCS with an init container)"
        )
    if expected_sha256 is not None and digest != expected_sha256:
        raise LoadError(
            f"{uri}: sha256 mismatch: expected {expected_sha256}, file has {digest}; refusing to load"
        )
    estimator = _deserialise(uri, source, model_format, skops_trusted)
    _check_estimator(uri, estimator)
    return LoadedModel(estimator=estimator, source=uri, format=model_format, sha256=digest)


def _local_path(uri: str) -> Path:
    if uri.lower().startswith("file:"):
        parts = urllib.parse.urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise LoadError(
                f"{uri}: file:// URIs must name a local file (file:///path), not host {parts.netloc!r}"
            )
        path = Path(urllib.parse.unquote(parts.path))
    else:
        path = Path(uri)
    if path.is_dir():
        found = [path / name for name in DIRECTORY_CANDIDATES if (path / name).is_file()]
        if len(found) != 1:
            what = "no" if not found else "more than one"
            raise LoadError(
                f"{uri}: directory has {what} model file; expected one of {', '.join(DIRECTORY_CANDIDATES)}"
            )
        path = found[0]
    if not path.is_file():
        raise LoadError(f"{uri}: no such file ({path})")
    return path


def _download(url: str) -> bytes:
    try:
        response = httpx.get(url, timeout=DOWNLOAD_TIMEOUT_SECONDS, follow_redirects=True)
    except httpx.HTTPError as error:
        raise LoadError(f"{url}: download failed: {error}") from error
    if response.status_code != 200:
        raise LoadError(f"{url}: download failed: HTTP {response.status_code}")
    return response.content


def _file_sha256(uri: str, path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError as error:
        raise LoadError(f"{uri}: cannot read {path}: {error.strerror}") from error
    return digest.hexdigest()


def _format_of(uri: str, name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in JOBLIB_SUFFIXES:
        return "joblib"
    if suffix in SKOPS_SUFFIXES:
        return "skops"
    supported = ", ".join(JOBLIB_SUFFIXES + SKOPS_SUFFIXES)
    raise LoadError(f"{uri}: unsupported model format {suffix or '(no suffix)'!r}; supported: {supported}")


def _deserialise(uri: str, source: Path | bytes, model_format: str, skops_trusted: tuple[str, ...]) -> Any:
    if model_format == "skops":
        return _load_skops(uri, source, skops_trusted)
    import joblib

    try:
        return joblib.load(io.BytesIO(source) if isinstance(source, bytes) else source)
    # Unpickling can raise anything (a missing module, a truncated file, a class's own error).
    except Exception as error:
        raise LoadError(f"{uri}: not a readable joblib file: {type(error).__name__}: {error}") from error


def _load_skops(uri: str, source: Path | bytes, skops_trusted: tuple[str, ...]) -> Any:
    try:
        import skops.io
    except ImportError as error:
        raise LoadError(
            f"{uri}: .skops files need the skops package (pip install vigil-model-server[skops])"
        ) from error
    try:
        if isinstance(source, bytes):
            untrusted = skops.io.get_untrusted_types(data=source)
        else:
            untrusted = skops.io.get_untrusted_types(file=source)
    except Exception as error:
        raise LoadError(f"{uri}: not a readable skops file: {type(error).__name__}: {error}") from error
    refused = sorted(set(untrusted) - set(skops_trusted))
    if refused:
        raise LoadError(
            f"{uri}: skops file contains types that are not trusted: {', '.join(refused)}; "
            "if you trust them, list them in --skops-trusted-types"
        )
    try:
        if isinstance(source, bytes):
            return skops.io.loads(source, trusted=list(untrusted))
        return skops.io.load(source, trusted=list(untrusted))
    except Exception as error:
        raise LoadError(f"{uri}: not a readable skops file: {type(error).__name__}: {error}") from error


def _check_estimator(uri: str, estimator: Any) -> None:
    if not callable(getattr(estimator, "predict", None)):
        raise LoadError(f"{uri}: holds a {type(estimator).__qualname__}, not an estimator with predict()")
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError as error:
        raise LoadError(
            f"{uri}: the {type(estimator).__qualname__} is not fitted; fit it before saving"
        ) from error
    except TypeError:
        # Not a scikit-learn estimator (no fit()); it has predict(), which is all we call.
        pass
