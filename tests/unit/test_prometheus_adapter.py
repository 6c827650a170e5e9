"""The Prometheus adapter: auth headers, answers turned into measurements, hostile answers (against
real local HTTP servers), and the operator's policy (allow-list, credentials over http, Secrets)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import time

import pytest
from aiohttp import web

from vigil_operator.analysis import Measurement, PairedCounts
from vigil_operator.prometheus import (
    AccessPolicy,
    PrometheusAccess,
    PrometheusError,
    _auth_headers,
    access_with_secret,
    accuracy_measurement,
    check_credentials_transport,
    check_url,
    close,
    decode_secret,
    measure,
    paired_counts,
    single_value_measurement,
    with_paired_counts,
)
from vigil_operator.text import MESSAGE_LIMIT, bounded


def test_a_token_is_sent_as_a_bearer_header() -> None:
    assert _auth_headers(PrometheusAccess(url="http://p", token="t0k")) == {"Authorization": "Bearer t0k"}


def test_username_and_password_are_sent_as_basic_auth() -> None:
    header = _auth_headers(PrometheusAccess(url="http://p", username="u", password="p:w"))["Authorization"]
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "u:p:w"


def test_no_credentials_no_header() -> None:
    assert _auth_headers(PrometheusAccess(url="http://p")) == {}


def test_credentials_are_not_in_the_repr_nor_the_safe_url() -> None:
    access = PrometheusAccess(url="https://u:pw@p:9090", token="t0k", password="pw")
    assert "t0k" not in repr(access)
    assert "pw" not in access.safe_url


def _vector(*series: tuple[str, str]) -> dict:
    return {
        "resultType": "vector",
        "result": [{"metric": {"vigil_series": name}, "value": [0, value]} for name, value in series],
    }


def test_the_builtin_answer_gives_counts_and_accuracy() -> None:
    measurement = accuracy_measurement(_vector(("correct", "90"), ("total", "100")))
    assert (measurement.correct, measurement.samples, measurement.value) == (90.0, 100.0, 0.9)


def test_no_feedback_series_is_an_error_that_says_what_to_check() -> None:
    with pytest.raises(PrometheusError, match="namespace label"):
        accuracy_measurement(_vector())


def test_a_nan_count_is_an_error() -> None:
    with pytest.raises(PrometheusError, match="nan"):
        accuracy_measurement(_vector(("correct", "NaN"), ("total", "NaN")))


@pytest.mark.parametrize(
    ("data", "value"),
    [({"resultType": "scalar", "result": [0, "0.93"]}, 0.93), (_vector(("x", "0.5")), 0.5)],
)
def test_a_custom_query_returns_one_number(data: dict, value: float) -> None:
    assert single_value_measurement(data).value == value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_vector(), "0 series"),
        (_vector(("a", "1"), ("b", "2")), "2 series"),
        ({"resultType": "matrix", "result": []}, "matrix"),
        ({"resultType": "scalar", "result": [0, "+Inf"]}, "inf"),
    ],
)
def test_a_custom_query_that_is_not_one_number_is_an_error(data: dict, message: str) -> None:
    with pytest.raises(PrometheusError, match=message):
        single_value_measurement(data)


SECRET = {"url": "https://prometheus.monitoring:9090/", "username": "u", "password": "pw", "ca.crt": "PEM"}


def test_secret_credentials_go_to_the_url_the_secret_names() -> None:
    access = access_with_secret("https://prometheus.monitoring:9090", 10, "prom-reader", SECRET)
    assert (access.username, access.password, access.ca_cert) == ("u", "pw", "PEM")


def test_secret_credentials_are_never_sent_to_another_url() -> None:
    with pytest.raises(PrometheusError, match=r"not for https://attacker\.example") as refused:
        access_with_secret("https://attacker.example", 10, "prom-reader", SECRET)
    assert "pw" not in str(refused.value)


def test_a_secret_without_a_url_is_refused_with_what_to_add() -> None:
    with pytest.raises(PrometheusError, match='no "url" key'):
        access_with_secret("https://prometheus.monitoring:9090", 10, "prom-reader", {"token": "t"})


# --- hostile answers: a real HTTP server in the test's own event loop ----------------------------
# prometheusUrl is chosen by whoever may edit a ModelDeployment, so the adapter must survive any
# answer. These servers are plain aiohttp handlers on 127.0.0.1; no real Prometheus can answer so.

LIMIT = 64 * 1024


async def _serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # the port the OS chose
    return runner, f"http://127.0.0.1:{port}"


def _measure_against(handler, *, timeout: float = 5.0, limit: int = LIMIT) -> tuple[str | None, float]:
    """The measurement's error against a server answering with `handler`, and the seconds it took."""

    async def run() -> tuple[str | None, float]:
        runner, url = await _serve(handler)
        started = time.monotonic()
        try:
            access = PrometheusAccess(url=url, timeout=timeout, max_response_bytes=limit)
            measurement = await measure(access, "vector(1)", builtin=False)
            return measurement.error, time.monotonic() - started
        finally:
            await close()
            await runner.cleanup()

    return asyncio.run(run())


def test_a_normal_answer_is_read() -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "success", "data": {"resultType": "scalar", "result": [0, "0.5"]}}
        )

    assert _measure_against(answer)[0] is None


def test_an_answer_longer_than_the_cap_is_cut_off_and_is_an_error() -> None:
    sent = []

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse up front
        await response.prepare(request)
        chunk = b"[" + b"0," * 32 * 1024
        try:
            for _ in range(10_000):  # 640 MB if anyone read it all
                await response.write(chunk)
                sent.append(len(chunk))
        except (ConnectionResetError, ConnectionError):
            pass
        return response

    error, _ = _measure_against(endless)
    assert error is not None
    assert "answered too much" in error
    assert f"at most {LIMIT} bytes" in error
    assert sum(sent) < 100 * LIMIT, "the operator hung up soon after the cap"


def test_an_announced_length_over_the_cap_is_refused_before_reading() -> None:
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b" " * (LIMIT + 1), content_type="application/json")

    error, _ = _measure_against(big)
    assert error is not None
    assert f"announced {LIMIT + 1} bytes" in error


@pytest.mark.parametrize(
    "body",
    [b"<html>not prometheus</html>", b"\xff\xfe\x00garbage", b"[" * 50_000, b'"just a string"', b""],
    ids=["html", "binary", "deeply-nested", "not-an-object", "empty"],
)
def test_garbage_is_an_error_verdict_never_an_exception(body: bytes) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    error, _ = _measure_against(garbage)
    assert error is not None
    assert "without a JSON body" in error


@pytest.mark.parametrize(
    "data",
    [[], {"resultType": "vector", "result": "x"}, {"resultType": "scalar", "result": None}],
    ids=["list", "string-result", "null-scalar"],
)
def test_a_success_with_a_malformed_data_part_is_an_error(data: object) -> None:
    async def odd(request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": data})

    error, _ = _measure_against(odd)
    assert error is not None


def test_a_500_with_a_huge_error_message_is_a_bounded_error() -> None:
    async def failing(request: web.Request) -> web.Response:
        body = {"status": "error", "errorType": "internal", "error": "boom " * 10_000}
        return web.json_response(body, status=500)

    error, _ = _measure_against(failing)
    assert error is not None
    assert error.startswith("Prometheus rejected the query (internal): boom")
    assert len(error) <= MESSAGE_LIMIT


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_never_followed(status: int) -> None:
    """An allowed Prometheus must not be able to send the query to a URL the allow-list never saw."""
    followed: list[str] = []

    async def redirecting(request: web.Request) -> web.Response:
        if request.path != "/api/v1/query":
            followed.append(request.path)
            return web.json_response(
                {"status": "success", "data": {"resultType": "scalar", "result": [0, "1"]}}
            )
        return web.Response(status=status, headers={"Location": "/elsewhere/api/v1/query"})

    error, _ = _measure_against(redirecting)
    assert error is not None
    assert f"answered a redirect (HTTP {status})" in error
    assert followed == []


def test_a_plain_500_is_an_error() -> None:
    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=500, text="Internal Server Error")

    error, _ = _measure_against(failing)
    assert error is not None
    assert "HTTP 500 without a JSON body" in error


def test_a_server_that_dribbles_its_answer_is_cut_off_at_the_query_timeout() -> None:
    async def dribble(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            for _ in range(100):
                await response.write(b" ")
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass
        return response

    error, seconds = _measure_against(dribble, timeout=0.5)
    assert error is not None
    assert "did not answer within 0.5s" in error
    assert seconds < 5, "one deadline for the whole answer, not one per read"


def test_a_compressed_answer_is_never_decompressed() -> None:
    bomb = gzip.compress(b" " * (10 * LIMIT))  # small on the wire, ten times the cap inflated

    async def compressed(request: web.Request) -> web.Response:
        assert request.headers.get("Accept-Encoding") == "identity"
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    error, _ = _measure_against(compressed)
    assert error is not None
    assert "without a JSON body" in error


# --- the operator's policy: allow-list, credentials over http, Secret decoding --------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://prometheus.monitoring:9090", True),
        ("http://prometheus.monitoring:9090/", True),
        ("http://PROMETHEUS.monitoring:9090", True),
        ("https://thanos.monitoring/tenant-a/prom", True),
        ("https://thanos.monitoring/tenant-a", True),
        ("https://thanos.monitoring/tenant-ab", False),  # a path prefix counts by whole segments
        ("https://thanos.monitoring/tenant-b", False),
        ("http://prometheus.monitoring:9091", False),
        ("https://prometheus.monitoring:9090", False),  # another scheme is another server
        ("http://prometheus.monitoring.evil.example:9090", False),
        ("http://169.254.169.254/latest/meta-data", False),
        ("https://thanos.monitoring/tenant-a/..%2Ftenant-b", False),  # a gateway may decode it
        ("https://thanos.monitoring/tenant-a/%2e%2e/tenant-b", False),
        ("https://thanos.monitoring/tenant-a/../tenant-b", False),
        ("https://thanos.monitoring/tenant-a/x%5C..%5Ctenant-b", False),
    ],
)
def test_only_urls_at_or_below_an_allowed_url_are_queried(url: str, allowed: bool) -> None:
    policy = AccessPolicy(
        allowed_urls=("http://prometheus.monitoring:9090", "https://thanos.monitoring/tenant-a")
    )
    if allowed:
        check_url(url, policy)
    else:
        with pytest.raises(PrometheusError, match=r"not in the operator's allow-list.*no request sent"):
            check_url(url, policy)


def test_without_an_allow_list_any_http_url_is_queried_but_nothing_else() -> None:
    check_url("http://anything.example:1234", AccessPolicy())
    for url in ("file:///etc/passwd", "ftp://prometheus:21", "prometheus:9090"):
        with pytest.raises(PrometheusError, match="not an http:// or https:// URL"):
            check_url(url, AccessPolicy())


def test_the_refusal_names_the_url_without_its_secrets() -> None:
    with pytest.raises(PrometheusError) as refused:
        check_url("http://u:pw@evil.example/?token=abc", AccessPolicy(allowed_urls=("http://p:9090",)))
    assert "pw" not in str(refused.value)
    assert "abc" not in str(refused.value)


@pytest.mark.parametrize(
    "access",
    [
        PrometheusAccess(url="http://p:9090", token="t0k"),
        PrometheusAccess(url="http://p:9090", username="u", password="pw"),
        PrometheusAccess(url="http://u:pw@p:9090"),
    ],
    ids=["token", "basic", "userinfo"],
)
def test_credentials_are_refused_over_plain_http(access: PrometheusAccess) -> None:
    with pytest.raises(PrometheusError, match=r"clear text over http://; use https://") as refused:
        check_credentials_transport(access, AccessPolicy())
    assert "t0k" not in str(refused.value)
    assert "pw" not in str(refused.value)
    check_credentials_transport(access, AccessPolicy(credentials_over_http=True))  # the labs' opt-out


def test_credentials_over_https_and_http_without_credentials_are_fine() -> None:
    check_credentials_transport(PrometheusAccess(url="https://p:9090", token="t0k"), AccessPolicy())
    check_credentials_transport(PrometheusAccess(url="http://p:9090"), AccessPolicy())


def test_a_secret_value_that_is_not_utf8_is_named_by_its_key_never_shown() -> None:
    data = {"url": b"https://p:9090", "password": b"\xff\xfesecret\x80"}
    with pytest.raises(PrometheusError, match="key 'password' is not UTF-8 text") as refused:
        decode_secret("prom-reader", data)
    assert "secret\\x80" not in str(refused.value)
    assert "\\xff" not in str(refused.value)


def test_keys_the_operator_does_not_use_are_never_decoded() -> None:
    data = {"url": b"https://p:9090", "token": b"t0k", "keystore.p12": b"\x00\xff\x80 binary"}
    assert decode_secret("prom-reader", data) == {"url": "https://p:9090", "token": "t0k"}


def test_messages_are_bounded() -> None:
    assert bounded("short") == "short"
    cut = bounded("x" * 100_000)
    assert len(cut) == MESSAGE_LIMIT
    assert cut.endswith("(cut, 100000 characters in all)")
    assert len(bounded("y" * 5000, 1024)) == 1024


def _outcomes(*series: tuple[str, str]) -> dict:
    return {
        "resultType": "vector",
        "result": [{"metric": {"outcome": name}, "value": [0, value]} for name, value in series],
    }


def test_the_paired_answer_gives_the_four_counts() -> None:
    counts = paired_counts(
        _outcomes(
            ("both_right", "900"),
            ("both_wrong", "50"),
            ("only_stable_right", "30"),
            ("only_candidate_right", "20"),
        )
    )
    assert counts == PairedCounts(
        both_right=900, both_wrong=50, only_stable_right=30, only_candidate_right=20
    )


def test_a_paired_outcome_missing_beside_the_others_counts_zero() -> None:
    counts = paired_counts(_outcomes(("both_right", "100"), ("only_stable_right", "3")))
    assert counts == PairedCounts(both_right=100, only_stable_right=3)


def test_no_paired_series_is_an_error_not_zero() -> None:
    with pytest.raises(PrometheusError, match="no paired feedback series"):
        paired_counts(_outcomes())
    with pytest.raises(PrometheusError, match="no paired feedback series"):
        paired_counts(_outcomes(("something_else", "4")))


def test_a_paired_count_that_is_not_a_number_is_an_error() -> None:
    with pytest.raises(PrometheusError, match="returned nan"):
        paired_counts(_outcomes(("both_right", "NaN")))


def _with_paired_against(handler, measurement: Measurement) -> Measurement:
    async def run() -> Measurement:
        runner, url = await _serve(handler)
        try:
            access = PrometheusAccess(url=url, timeout=5.0, max_response_bytes=LIMIT)
            return await with_paired_counts(access, measurement, "sum by (outcome) (x)")
        finally:
            await close()
            await runner.cleanup()

    return asyncio.run(run())


OWN_LABELS = Measurement(value=0.9, correct=90, samples=100)


def test_a_shadow_measurement_gets_the_paired_counts_of_the_same_check() -> None:
    async def answer(request: web.Request) -> web.Response:
        data = _outcomes(("both_right", "80"), ("only_stable_right", "7"), ("only_candidate_right", "3"))
        return web.json_response({"status": "success", "data": data})

    measured = _with_paired_against(answer, OWN_LABELS)
    assert measured.paired == PairedCounts(80, 0, 7, 3)
    assert (measured.value, measured.correct, measured.samples) == (0.9, 90, 100)


@pytest.mark.parametrize(
    "body", [{"status": "success", "data": {"resultType": "vector", "result": []}}, {"status": "error"}]
)
def test_a_failed_paired_query_makes_the_whole_shadow_check_an_error(body: dict) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body)

    measured = _with_paired_against(answer, OWN_LABELS)
    assert measured.error is not None
    assert measured.error.startswith("paired counts: ")
    assert measured.paired is None


def test_an_errored_measurement_is_not_queried_again() -> None:
    async def answer(request: web.Request) -> web.Response:
        raise AssertionError("no query expected")

    assert _with_paired_against(answer, Measurement(error="down")) == Measurement(error="down")
