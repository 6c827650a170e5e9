"""The only module that talks to Prometheus: one instant query, turned into a Measurement.

Credentials are sent as headers and never appear in errors, logs, events or status.

`spec.analysis.prometheusUrl` is chosen by whoever may edit a ModelDeployment, so every answer is
treated as hostile: the body is read up to a size cap (and never decompressed), the whole query
has one deadline, every message is bounded, and an optional allow-list keeps the operator from
sending requests anywhere else (docs/security.md, "Prometheus answers").
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import aiohttp
from yarl import URL

from vigil_operator import metrics
from vigil_operator.analysis import Measurement, PairedCounts
from vigil_operator.diagnosis import SeriesEvidence, diagnose
from vigil_operator.queries import OUTCOME_LABEL, SERIES_LABEL, PairedOutcome, Target, no_series_query
from vigil_operator.status import to_timestamp
from vigil_operator.text import bounded

DEFAULT_MAX_RESPONSE_BYTES = 1 << 20  # a real answer of the built-in query is under 2 KiB
_CHUNK_BYTES = 64 * 1024
# The keys of a credentials Secret the operator reads; any other key is left alone (never decoded).
SECRET_KEYS = ("url", "token", "username", "password", "ca.crt")


@dataclass(frozen=True)
class AccessPolicy:
    """The operator's own rules for every check, whatever a ModelDeployment asks (operator settings)."""

    allowed_urls: tuple[str, ...] = ()  # empty: any http(s) URL
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    credentials_over_http: bool = False  # labs only: send credentials over plain http


@dataclass(frozen=True)
class PrometheusAccess:
    """Where and how to query; credentials come from the ModelDeployment's Secret."""

    url: str
    timeout: float = 10.0
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    token: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    ca_cert: str | None = field(default=None, repr=False)

    @property
    def safe_url(self) -> str:
        """The URL without any user:password part or query, for messages."""
        return _safe(self.url)


class PrometheusError(Exception):
    """The check has no usable number: unreachable, refused, bad query, no series or NaN."""


class NoSeries(PrometheusError):
    """The built-in query matched no series; `measure` asks Prometheus why."""


def check_url(url: str, policy: AccessPolicy) -> None:
    """Refuse, before any request, a URL that is not http(s) or not under an allowed URL."""
    safe = _safe(url)
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise PrometheusError(f"prometheusUrl {safe} is not an http:// or https:// URL; no request sent")
    if policy.allowed_urls and not any(url_allowed(parsed, URL(allowed)) for allowed in policy.allowed_urls):
        raise PrometheusError(
            f"prometheusUrl {safe} is not in the operator's allow-list of Prometheus URLs "
            f"({', '.join(_safe(a) for a in policy.allowed_urls)}); no request sent. "
            "Ask the cluster admin to add it (chart value prometheus.allowedUrls)"
        )


def url_allowed(url: URL, allowed: URL) -> bool:
    """Same scheme, host and port as `allowed`, and a path at or below its path (segment-wise).

    A path with `.` or `..` segments, or an encoded dot, slash or backslash, is never allowed: a
    gateway that decodes and normalises it could land outside the allowed prefix.
    """
    raw = url.raw_path.lower()
    if (
        "%2f" in raw
        or "%5c" in raw
        or "%2e" in raw
        or "\\" in raw
        or any(part in (".", "..") for part in url.raw_path.split("/"))
    ):
        return False
    if (url.scheme, (url.host or "").lower(), url.port) != (
        allowed.scheme,
        (allowed.host or "").lower(),
        allowed.port,
    ):
        return False
    prefix = [part for part in allowed.path.split("/") if part]
    return [part for part in url.path.split("/") if part][: len(prefix)] == prefix


def check_credentials_transport(access: PrometheusAccess, policy: AccessPolicy) -> None:
    """Credentials (a Secret's, or user:password in the URL) go over https only, unless the
    operator explicitly allows plain http (labs)."""
    has_credentials = bool(access.token or access.username is not None or URL(access.url).user)
    if has_credentials and URL(access.url).scheme == "http" and not policy.credentials_over_http:
        raise PrometheusError(
            f"credentials for {access.safe_url} would travel in clear text over http://; "
            "use https:// (nothing was sent)"
        )


def decode_secret(secret_name: str, data: dict[str, bytes]) -> dict[str, str]:
    """The keys the operator uses, as text; a key that is not UTF-8 is named (its value never)."""
    decoded = {}
    for key in SECRET_KEYS:
        if key not in data:
            continue
        try:
            decoded[key] = data[key].decode("utf-8")
        except UnicodeDecodeError:
            raise PrometheusError(
                f"Secret {secret_name!r}: the value of key {key!r} is not UTF-8 text"
            ) from None
    return decoded


def access_with_secret(
    url: str,
    timeout: float,
    secret_name: str,
    secret: dict[str, str],
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> PrometheusAccess:
    """Credentials from a Secret, bound to the Prometheus URL the Secret itself names.

    Whoever may edit a ModelDeployment chooses `prometheusUrl`; without this binding they
    could have the operator send the namespace's Prometheus credentials to any host.
    """
    bound_to = secret.get("url", "").strip()
    if not bound_to:
        raise PrometheusError(
            f'Secret {secret_name!r} has no "url" key: add the Prometheus URL its credentials are for'
        )
    if bound_to.rstrip("/") != url.rstrip("/"):
        raise PrometheusError(
            f"Secret {secret_name!r} holds credentials for {_safe(bound_to)}, not for {_safe(url)}; "
            "they are sent only to the URL the Secret names"
        )
    return PrometheusAccess(
        url=url,
        timeout=timeout,
        max_response_bytes=max_response_bytes,
        token=secret.get("token"),
        username=secret.get("username"),
        password=secret.get("password"),
        ca_cert=secret.get("ca.crt"),
    )


def _safe(url: str) -> str:
    """A URL for messages: no user:password, no query string, bounded."""
    try:
        return bounded(str(URL(url).with_user(None).with_query(None).with_fragment(None)), 200)
    except (ValueError, TypeError):
        return "(an unparsable URL)"


_session: aiohttp.ClientSession | None = None


def _client() -> aiohttp.ClientSession:
    global _session
    if _session is None or _session.closed:
        # No pool limit: one hung Prometheus must not hold the connections every other
        # ModelDeployment's check waits for (each supervisor runs one check at a time anyway).
        # No decompression: a small gzip answer must not become a huge one in memory.
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
    return _session


async def close() -> None:
    if _session is not None and not _session.closed:
        await _session.close()


def _ssl_for(access: PrometheusAccess) -> ssl.SSLContext | bool:
    """The CA to trust, or True: aiohttp's default verification against the system CAs."""
    if not access.ca_cert:
        return True
    return ssl.create_default_context(cadata=access.ca_cert)


def _auth_headers(access: PrometheusAccess) -> dict[str, str]:
    if access.token:
        return {"Authorization": f"Bearer {access.token}"}
    if access.username is not None:
        return {"Authorization": aiohttp.encode_basic_auth(access.username, access.password or "")}
    return {}


class AnswerTooLarge(PrometheusError):
    """The answer was longer than the operator reads; the rest was never received."""


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, read in chunks; AnswerTooLarge (and the connection dropped) past `limit` bytes."""
    if response.content_length is not None and response.content_length > limit:
        response.close()
        raise AnswerTooLarge(f"announced {response.content_length} bytes")
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        body += chunk
        if len(body) > limit:
            response.close()
            raise AnswerTooLarge(f"sent more than {limit} bytes")
    return bytes(body)


def parse_answer(raw: bytes) -> Any:
    """The JSON of an answer, or None when it is not JSON (garbage, too deeply nested)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


async def instant_query(access: PrometheusAccess, query: str, at: datetime | None = None) -> dict[str, Any]:
    """`data` of /api/v1/query for `query`, evaluated `at` (default: Prometheus' now).

    `at` is sent to the millisecond, truncated like the check times kept in status, so a check's
    range starts exactly where the previous check's ended. One deadline (`timeout`) covers the
    connection, the headers and the whole body, so a server that answers a byte a second is cut
    off too. Raises PrometheusError with a readable, bounded reason.
    """
    endpoint = URL(access.url.rstrip("/") + "/api/v1/query")
    metrics.PROMETHEUS_QUERIES.labels(access.safe_url).inc()
    form = {"query": query} if at is None else {"query": query, "time": to_timestamp(at)}
    headers = {**_auth_headers(access), "Accept": "application/json", "Accept-Encoding": "identity"}
    try:
        async with asyncio.timeout(access.timeout):
            async with _client().post(
                endpoint,
                data=form,
                headers=headers,
                ssl=_ssl_for(access),
                timeout=aiohttp.ClientTimeout(total=access.timeout),
                # A redirect would take the query (and, same-origin, the credentials) to a URL
                # the allow-list never saw.
                allow_redirects=False,
            ) as response:
                status = response.status
                encoding = response.headers.get("Content-Encoding", "identity").lower()
                raw = await read_capped(response, access.max_response_bytes)
    except AnswerTooLarge as error:
        raise PrometheusError(
            f"Prometheus at {access.safe_url} answered too much ({error}; the operator reads at most "
            f"{access.max_response_bytes} bytes): is prometheusUrl a Prometheus?"
        ) from None
    except TimeoutError:
        raise PrometheusError(
            f"Prometheus at {access.safe_url} did not answer within {access.timeout:g}s"
        ) from None
    except (aiohttp.ClientError, ssl.SSLError, OSError) as error:
        raise PrometheusError(
            f"Prometheus at {access.safe_url} is unreachable: {type(error).__name__}"
        ) from None
    if status in (401, 403):
        raise PrometheusError(f"Prometheus at {access.safe_url} refused the credentials (HTTP {status})")
    if 300 <= status < 400:
        raise PrometheusError(
            f"Prometheus at {access.safe_url} answered a redirect (HTTP {status}); the operator follows "
            "none: set prometheusUrl to the URL that answers"
        )
    body = parse_answer(raw) if encoding == "identity" else None
    if not isinstance(body, dict):
        raise PrometheusError(f"Prometheus at {access.safe_url} answered HTTP {status} without a JSON body")
    if body.get("status") != "success":
        raise PrometheusError(
            bounded(f"Prometheus rejected the query ({body.get('errorType')}): {body.get('error')}")
        )
    data: dict[str, Any] = body["data"]
    return data


def _number(text: Any) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise PrometheusError(f"the query returned {value}")
    return value


def accuracy_measurement(data: dict[str, Any]) -> Measurement:
    """Correct and total counts from the built-in query's two series."""
    counts = {
        item.get("metric", {}).get(SERIES_LABEL): float(item["value"][1])
        for item in data.get("result", [])
        if data.get("resultType") == "vector"
    }
    if "total" not in counts:
        raise NoSeries(
            "no feedback series for this version: has the model server received labelled predictions, "
            "and does Prometheus scrape it with a namespace label?"
        )
    total = _number(counts["total"])
    correct = _number(counts.get("correct", 0.0))
    return Measurement(value=correct / total if total > 0 else None, correct=correct, samples=total)


def paired_counts(data: dict[str, Any]) -> PairedCounts:
    """The four paired counts from `queries.paired_comparison_query`'s series (one per outcome).

    No series at all means no paired counter was scraped (mirroring off, or not scraped): an
    error, never a count of 0. An outcome missing beside the others counts 0.
    """
    counts = {
        item.get("metric", {}).get(OUTCOME_LABEL): _number(item["value"][1])
        for item in data.get("result", [])
        if data.get("resultType") == "vector"
    }
    known = {outcome.value for outcome in PairedOutcome}
    if not known & counts.keys():
        raise PrometheusError(
            "no paired feedback series for this candidate and stable version: does the stable "
            "release mirror requests to it, and does Prometheus scrape the candidate?"
        )
    return PairedCounts(
        both_right=counts.get(PairedOutcome.BOTH_RIGHT, 0.0),
        both_wrong=counts.get(PairedOutcome.BOTH_WRONG, 0.0),
        only_stable_right=counts.get(PairedOutcome.ONLY_STABLE_RIGHT, 0.0),
        only_candidate_right=counts.get(PairedOutcome.ONLY_CANDIDATE_RIGHT, 0.0),
    )


def single_value_measurement(data: dict[str, Any]) -> Measurement:
    """The one number a custom query must return."""
    kind = data.get("resultType")
    result: Any = data.get("result")  # [time, "value"] for a scalar, a list of series for a vector
    if kind == "scalar":
        return Measurement(value=_number(result[1]))
    if kind == "vector" and isinstance(result, list):
        if len(result) != 1:
            raise PrometheusError(
                f"the query returned {len(result)} series; it must return exactly one number"
            )
        return Measurement(value=_number(result[0]["value"][1]))
    raise PrometheusError(f"the query returned a {kind}; it must return one number (a scalar or one series)")


def series_evidence(data: dict[str, Any]) -> SeriesEvidence:
    """The counts of `queries.no_series_query`'s answer; a count Prometheus left out is 0."""
    counts = {
        item.get("metric", {}).get(SERIES_LABEL): int(float(item["value"][1]))
        for item in data.get("result", [])
        if data.get("resultType") == "vector"
    }
    return SeriesEvidence(
        targets_up=counts.get("up", 0),
        targets_down=counts.get("down", 0),
        unlabelled_series=counts.get("unlabelled", 0),
    )


async def explain_no_series(
    access: PrometheusAccess, target: Target, at: datetime | None, fallback: str
) -> str:
    """Why the built-in query found nothing, from one more query at the same time; `fallback`
    (the generic message) when that query fails too."""
    try:
        data = await instant_query(access, no_series_query(target), at)
        return diagnose(target, series_evidence(data)).message
    except PrometheusError:
        return fallback
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return fallback


async def measure(
    access: PrometheusAccess,
    query: str,
    *,
    builtin: bool,
    at: datetime | None = None,
    target: Target | None = None,
    answer: Callable[[], Awaitable[dict[str, Any]]] | None = None,
) -> Measurement:
    """One check's measurement, evaluated `at` the check's time.

    Every failure becomes `Measurement(error=...)`, never an exception. The built-in query's
    ranges end at the check's time, so evaluating there makes back-to-back checks meet exactly.
    With `target`, an empty built-in answer is explained (`diagnosis`): which of no scrape
    target, targets down, no `namespace` label or no labels yet, and the fix. `answer`, when
    given, supplies the answer instead of `query` (the object's share of a batched query,
    `batcher.Batcher`); it is read exactly like the single query's.
    """
    try:
        data = await (answer() if answer is not None else instant_query(access, query, at))
        return accuracy_measurement(data) if builtin else single_value_measurement(data)
    except NoSeries as error:
        if target is None:
            return Measurement(error=bounded(str(error)))
        return Measurement(error=bounded(await explain_no_series(access, target, at, str(error))))
    except PrometheusError as error:
        return Measurement(error=bounded(str(error)))
    except asyncio.CancelledError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as error:
        return Measurement(
            error=bounded(f"unexpected answer from Prometheus: {type(error).__name__}: {error}")
        )


async def with_paired_counts(
    access: PrometheusAccess, measurement: Measurement, query: str, at: datetime | None = None
) -> Measurement:
    """A shadow check's measurement with the paired counts of `query` added (same time, same range).

    A failed paired query makes the whole check an error: a shadow is judged on both or not at all.
    """
    if measurement.error is not None:
        return measurement
    try:
        counts = paired_counts(await instant_query(access, query, at))
    except PrometheusError as error:
        return Measurement(error=bounded(f"paired counts: {error}"))
    except asyncio.CancelledError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as error:
        return Measurement(
            error=bounded(
                f"paired counts: unexpected answer from Prometheus: {type(error).__name__}: {error}"
            )
        )
    return replace(measurement, paired=counts)
