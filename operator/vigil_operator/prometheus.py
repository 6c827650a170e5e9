"""The only module that talks to Prometheus: one instant query, turned into a Measurement.

Credentials are sent as headers and never appear in errors, logs, events or status.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from yarl import URL

from vigil_operator.analysis import Measurement
from vigil_operator.queries import SERIES_LABEL
from vigil_operator.status import to_timestamp


@dataclass(frozen=True)
class PrometheusAccess:
    """Where and how to query; credentials come from the ModelDeployment's Secret."""

    url: str
    timeout: float = 10.0
    token: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    ca_cert: str | None = field(default=None, repr=False)

    @property
    def safe_url(self) -> str:
        """The URL without any user:password part, for messages."""
        return str(URL(self.url).with_user(None))


class PrometheusError(Exception):
    """The check has no usable number: unreachable, refused, bad query, no series or NaN."""


def access_with_secret(
    url: str, timeout: float, secret_name: str, secret: dict[str, str]
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
        safe = str(URL(bound_to).with_user(None))
        raise PrometheusError(
            f"Secret {secret_name!r} holds credentials for {safe}, not for {URL(url).with_user(None)}; "
            "they are sent only to the URL the Secret names"
        )
    return PrometheusAccess(
        url=url,
        timeout=timeout,
        token=secret.get("token"),
        username=secret.get("username"),
        password=secret.get("password"),
        ca_cert=secret.get("ca.crt"),
    )


_session: aiohttp.ClientSession | None = None


def _client() -> aiohttp.ClientSession:
    global _session
    if _session is None or _session.closed:
        _session = aiohttp.ClientSession()
    return _session


async def close() -> None:
    if _session is not None and not _session.closed:
        await _session.close()


def _ssl_for(access: PrometheusAccess) -> ssl.SSLContext | None:
    if not access.ca_cert:
        return None
    return ssl.create_default_context(cadata=access.ca_cert)


def _auth_headers(access: PrometheusAccess) -> dict[str, str]:
    if access.token:
        return {"Authorization": f"Bearer {access.token}"}
    if access.username is not None:
        return {"Authorization": aiohttp.encode_basic_auth(access.username, access.password or "")}
    return {}


async def instant_query(access: PrometheusAccess, query: str, at: datetime | None = None) -> dict[str, Any]:
    """`data` of /api/v1/query for `query`, evaluated `at` (default: Prometheus' now).

    `at` is sent to the millisecond, truncated like the check times kept in status, so a check's
    range starts exactly where the previous check's ended. Raises PrometheusError with a readable
    reason.
    """
    endpoint = URL(access.url.rstrip("/") + "/api/v1/query")
    form = {"query": query} if at is None else {"query": query, "time": to_timestamp(at)}
    try:
        async with _client().post(
            endpoint,
            data=form,
            headers=_auth_headers(access),
            ssl=_ssl_for(access),
            timeout=aiohttp.ClientTimeout(total=access.timeout),
        ) as response:
            status = response.status
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
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
    if not isinstance(body, dict):
        raise PrometheusError(f"Prometheus at {access.safe_url} answered HTTP {status} without a JSON body")
    if body.get("status") != "success":
        raise PrometheusError(f"Prometheus rejected the query ({body.get('errorType')}): {body.get('error')}")
    return body["data"]


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
        raise PrometheusError(
            "no feedback series for this version: has the model server received labelled predictions, "
            "and does Prometheus scrape it with a namespace label?"
        )
    total = _number(counts["total"])
    correct = _number(counts.get("correct", 0.0))
    return Measurement(value=correct / total if total > 0 else None, correct=correct, samples=total)


def single_value_measurement(data: dict[str, Any]) -> Measurement:
    """The one number a custom query must return."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return Measurement(value=_number(result[1]))
    if kind == "vector" and isinstance(result, list):
        if len(result) != 1:
            raise PrometheusError(
                f"the query returned {len(result)} series; it must return exactly one number"
            )
        return Measurement(value=_number(result[0]["value"][1]))
    raise PrometheusError(f"the query returned a {kind}; it must return one number (a scalar or one series)")


async def measure(
    access: PrometheusAccess, query: str, *, builtin: bool, at: datetime | None = None
) -> Measurement:
    """One check's measurement, evaluated `at` the check's time.

    Every failure becomes `Measurement(error=...)`, never an exception. The built-in query's
    ranges end at the check's time, so evaluating there makes back-to-back checks meet exactly.
    """
    try:
        data = await instant_query(access, query, at)
        return accuracy_measurement(data) if builtin else single_value_measurement(data)
    except PrometheusError as error:
        return Measurement(error=str(error))
    except asyncio.CancelledError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as error:
        return Measurement(error=f"unexpected answer from Prometheus: {type(error).__name__}: {error}")
