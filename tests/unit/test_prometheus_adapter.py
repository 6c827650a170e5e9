"""The pure parts of the Prometheus adapter: auth headers and answers turned into measurements."""

from __future__ import annotations

import base64

import pytest

from vigil_operator.prometheus import (
    PrometheusAccess,
    PrometheusError,
    _auth_headers,
    access_with_secret,
    accuracy_measurement,
    single_value_measurement,
)


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
