"""Read one object from S3 (or an S3-compatible store) or Google Cloud Storage, within a byte cap
and one deadline.

obstore (Rust's object_store behind one small wheel, no Python dependencies) talks to both: it
signs S3 requests, reads the standard environment (`AWS_*` including `AWS_ENDPOINT_URL`, web
identity for IRSA, container credentials for EKS Pod Identity, the instance metadata service;
`GOOGLE_*` and application default credentials, the metadata server for workload identity) and
imports in milliseconds. boto3 and google-cloud-storage would add tens of megabytes of pure
Python and about a second of imports to every cold start; fsspec adds a layer without a reader
that stops at a byte cap.

Credentials never reach a message: every error text is passed through `scrub`, which removes
the values of the credential variables as well as any URI's userinfo and query string.
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from vigil_model_server.redaction import redact_text

if TYPE_CHECKING:
    from obstore.store import ClientConfig, GCSConfig, ObjectStore, RetryConfig, S3Config
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

OBJECT_SCHEMES = ("s3", "gs")
# Variables whose values are credentials (or identify one); none of them is ever shown.
CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_TOKEN",
    "AWS_SSE_CUSTOMER_KEY_BASE64",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_BEARER_TOKEN",
)
# Chunks handed over by the store at least this large (the last may be smaller): big enough to
# be cheap, small enough that the cap and the deadline are checked often.
CHUNK_BYTES = 1024 * 1024
LONGEST_ERROR_CHARACTERS = 400


@dataclass(frozen=True)
class ObjectLocation:
    """`scheme://bucket/key` split; `shown` is how messages name it."""

    scheme: str
    bucket: str
    key: str

    @property
    def shown(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"


class ObjectStoreError(Exception):
    """Reading the object failed for good (missing, refused, too large): a retry would not help."""


class ObjectStoreUnavailable(ObjectStoreError):
    """The store did not answer in time, or answered with a 5xx: a later attempt may succeed."""


def parse_object_uri(uri: str) -> ObjectLocation:
    """`s3://bucket/key` or `gs://bucket/object`; ValueError says what is wrong with the shape."""
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in OBJECT_SCHEMES:
        raise ValueError(f"not an object store URI (s3:// or gs://): {scheme}://")
    if "@" in parts.netloc:
        raise ValueError(
            "credentials do not belong in the URI; give them in the environment "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS) or the pod's identity"
        )
    if parts.query or parts.fragment:
        raise ValueError("an object URI takes no query string or fragment")
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]", bucket):
        raise ValueError(f"{bucket!r} is not a bucket name (3-63 lower-case letters, digits, '.', '-', '_')")
    if not key or key.endswith("/"):
        raise ValueError(f"name the object, not a bucket or a prefix: {scheme}://bucket/path/model.joblib")
    return ObjectLocation(scheme, bucket, key)


def read_object(
    location: ObjectLocation,
    *,
    max_bytes: int,
    timeout_seconds: float,
    environ: Mapping[str, str] | None = None,
) -> bytes:
    """The whole object, refused past `max_bytes`, given up after `timeout_seconds` in all.

    Raises ObjectStoreUnavailable when another attempt may succeed, ObjectStoreError otherwise;
    both messages name the object and carry no credential.
    """
    import obstore
    from obstore.exceptions import BaseError

    environ = os.environ if environ is None else environ
    deadline = time.monotonic() + timeout_seconds
    too_slow = ObjectStoreUnavailable(
        f"{location.shown}: download did not finish within {timeout_seconds:g} s "
        "(MODEL_DOWNLOAD_TIMEOUT_SECONDS)"
    )
    try:
        store = _store(location, timeout_seconds, environ)
        result = obstore.get(store, location.key)
        declared = result.meta["size"]
        if declared > max_bytes:
            raise ObjectStoreError(f"{location.shown}: {too_large(max_bytes)}")
        too_big = ObjectStoreError(f"{location.shown}: {too_large(max_bytes)}")
        return read_capped(result.stream(min_chunk_size=CHUNK_BYTES), max_bytes, deadline, too_big, too_slow)
    except (BaseError, OSError, RuntimeError, ValueError) as error:
        # The store's client gives up at the deadline with an error of its own: say which.
        if time.monotonic() >= deadline:
            raise too_slow from None
        raise _classified(location, error, environ) from None


def read_capped(
    chunks: Iterable[Buffer], max_bytes: int, deadline: float, too_big: Exception, too_slow: Exception
) -> bytes:
    """The chunks joined; `too_big` once past `max_bytes`, `too_slow` once past `deadline` (monotonic)."""
    content = bytearray()
    for chunk in chunks:
        content += chunk
        if len(content) > max_bytes:
            raise too_big
        if time.monotonic() > deadline:
            raise too_slow
    return bytes(content)


def too_large(max_bytes: int) -> str:
    return f"the model file is larger than {max_bytes} bytes (MODEL_MAX_BYTES); refusing to load"


def _store(location: ObjectLocation, timeout_seconds: float, environ: Mapping[str, str]) -> ObjectStore:
    """An obstore store for the bucket, configured from `environ`, with no retries of its own
    (the loader retries, with its own backoff and messages) and the deadline as its timeout."""
    from obstore.store import GCSStore, S3Store

    timeout = timedelta(seconds=timeout_seconds)
    retry: RetryConfig = {"max_retries": 0, "retry_timeout": timeout}
    if location.scheme == "s3":
        s3_config = _s3_config(environ)
        endpoint = str(s3_config.get("endpoint", ""))
        return S3Store(
            location.bucket,
            config=cast("S3Config", s3_config),
            client_options=_client_options(timeout, endpoint),
            retry_config=retry,
        )
    gcs_config = _gcs_config(environ)
    return GCSStore(
        location.bucket,
        config=cast("GCSConfig", gcs_config),
        client_options=_client_options(timeout, str(gcs_config.get("base_url", ""))),
        retry_config=retry,
    )


def _client_options(timeout: timedelta, endpoint: str) -> ClientConfig:
    """The whole request (body included) within `timeout`; plain http only to an endpoint that
    says http:// (a local MinIO, an emulator), as the AWS SDKs allow."""
    return {
        "timeout": timeout,
        "connect_timeout": min(timeout, timedelta(seconds=10)),
        "allow_http": endpoint.startswith("http://"),
    }


def _s3_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """The AWS settings obstore reads, taken from `environ` (not only os.environ, for tests).

    obstore reads the same names itself when they are in os.environ; passing them explicitly
    makes `environ` the one source. AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL, as in the
    AWS SDKs; AWS_REGION over AWS_DEFAULT_REGION.
    """
    names = {
        "AWS_ACCESS_KEY_ID": "access_key_id",
        "AWS_SECRET_ACCESS_KEY": "secret_access_key",
        "AWS_SESSION_TOKEN": "session_token",
        "AWS_DEFAULT_REGION": "region",
        "AWS_REGION": "region",
        "AWS_ENDPOINT_URL": "endpoint",
        "AWS_ENDPOINT_URL_S3": "endpoint",
        "AWS_WEB_IDENTITY_TOKEN_FILE": "web_identity_token_file",
        "AWS_ROLE_ARN": "role_arn",
        "AWS_ROLE_SESSION_NAME": "role_session_name",
        "AWS_STS_ENDPOINT": "sts_endpoint",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "container_credentials_relative_uri",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "container_credentials_full_uri",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "container_authorization_token_file",
        "AWS_METADATA_ENDPOINT": "metadata_endpoint",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "virtual_hosted_style_request",
        "AWS_SKIP_SIGNATURE": "skip_signature",
        "AWS_REQUEST_PAYER": "request_payer",
    }
    config: dict[str, Any] = {}
    for variable, key in names.items():  # later names win: REGION over DEFAULT_REGION, ..._S3 last
        if environ.get(variable):
            config[key] = environ[variable]
    return config


def _gcs_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """The Google settings obstore reads; STORAGE_EMULATOR_HOST (the Google SDKs' emulator
    switch) points at an emulator, unauthenticated, unless GOOGLE_BASE_URL says otherwise."""
    names = {
        "GOOGLE_SERVICE_ACCOUNT": "service_account",
        "GOOGLE_SERVICE_ACCOUNT_PATH": "service_account",
        "GOOGLE_SERVICE_ACCOUNT_KEY": "service_account_key",
        "GOOGLE_APPLICATION_CREDENTIALS": "application_credentials",
        "GOOGLE_BEARER_TOKEN": "bearer_token",
        "GOOGLE_BASE_URL": "base_url",
        "GOOGLE_SKIP_SIGNATURE": "skip_signature",
    }
    config: dict[str, Any] = {}
    for variable, key in names.items():
        if environ.get(variable):
            config[key] = environ[variable]
    emulator = environ.get("STORAGE_EMULATOR_HOST", "")
    if emulator and "base_url" not in config:
        config["base_url"] = emulator if "://" in emulator else f"http://{emulator}"
        config.setdefault("skip_signature", True)
    return config


def _classified(location: ObjectLocation, error: Exception, environ: Mapping[str, str]) -> ObjectStoreError:
    """One line that names the object and says what went wrong, without a credential."""
    from obstore.exceptions import (
        BaseError,
        NotFoundError,
        PermissionDeniedError,
        UnauthenticatedError,
    )

    # obstore raises the builtin FileNotFoundError for a missing object.
    if isinstance(error, NotFoundError | FileNotFoundError):
        return ObjectStoreError(f"{location.shown}: no such object (or no such bucket)")
    detail = scrub(_summary(str(error)), environ)
    denied = UnauthenticatedError | PermissionDeniedError | PermissionError
    if isinstance(error, denied) or _status(detail) in (401, 403):
        return ObjectStoreError(
            f"{location.shown}: access denied: check the credentials the pod has (AWS_* or GOOGLE_* "
            f"variables, or its service account's identity): {detail}"
        )
    status = _status(detail)
    if status is not None and status < 500 and status not in (408, 425, 429):
        return ObjectStoreError(f"{location.shown}: download failed: {detail}")
    if isinstance(error, BaseError | OSError | RuntimeError):
        return ObjectStoreUnavailable(f"{location.shown}: download failed: {detail}")
    return ObjectStoreError(f"{location.shown}: {detail}")


def _summary(text: str) -> str:
    """An S3 or GCS XML error body cut down to its status, code and message, which say what
    happened (`HTTP 403 SignatureDoesNotMatch: The request signature ...`); other text as is."""
    code = re.search(r"<Code>([^<]{1,100})</Code>", text)
    if code is None:
        return text
    message = re.search(r"<Message>([^<]{0,300})</Message>", text)
    status = _status(text)
    prefix = f"HTTP {status} " if status is not None else ""
    return f"{prefix}{code.group(1)}: {message.group(1) if message else ''}".rstrip(": ")


def _status(detail: str) -> int | None:
    found = re.search(r"\b(?:status(?: code)?:?|HTTP)\s*([1-5]\d\d)\b", detail)
    return int(found.group(1)) if found else None


def scrub(text: str, environ: Mapping[str, str]) -> str:
    """`text` on one line, without any credential variable's value, URI userinfo or query,
    and not longer than a log line should be."""
    for variable in CREDENTIAL_VARIABLES:
        value = environ.get(variable, "")
        if len(value) >= 4:
            text = text.replace(value, "***")
    # obstore appends the Rust error's debug dump, which repeats what the first part says.
    text = text.split("Debug source:", 1)[0]
    text = redact_text(" ".join(text.split()))
    if len(text) > LONGEST_ERROR_CHARACTERS:
        text = text[: LONGEST_ERROR_CHARACTERS - 3] + "..."
    return text
