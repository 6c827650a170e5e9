"""Operator settings from the environment and the command line (vigil_operator.config, main)."""

from __future__ import annotations

import pytest

from vigil_operator.config import Config
from vigil_operator.main import parse_args


def test_model_servers_get_no_scrape_annotations_by_default_one_scrape_path() -> None:
    assert Config.from_env({}).scrape_annotations is False
    assert Config().scrape_annotations is False


@pytest.mark.parametrize(
    ("text", "on"), [("true", True), ("1", True), ("On", True), ("false", False), ("", False)]
)
def test_scrape_annotations_come_from_the_environment(text: str, on: bool) -> None:
    assert Config.from_env({"VIGIL_SCRAPE_ANNOTATIONS": text}).scrape_annotations is on


def test_the_command_line_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_SCRAPE_ANNOTATIONS", "true")
    assert parse_args([]).scrape_annotations is True
    assert parse_args(["--no-scrape-annotations"]).scrape_annotations is False
    monkeypatch.delenv("VIGIL_SCRAPE_ANNOTATIONS")
    assert parse_args(["--scrape-annotations"]).scrape_annotations is True


def test_prometheus_limits_have_safe_defaults() -> None:
    policy = Config.from_env({}).prometheus_policy
    assert policy.allowed_urls == ()
    assert policy.max_response_bytes == 1024 * 1024
    assert policy.credentials_over_http is False


def test_prometheus_limits_come_from_the_environment() -> None:
    policy = Config.from_env(
        {
            "VIGIL_PROMETHEUS_ALLOWED_URLS": "http://a:9090, https://b/x",
            "VIGIL_PROMETHEUS_MAX_RESPONSE_BYTES": "4096",
            "VIGIL_PROMETHEUS_CREDENTIALS_OVER_HTTP": "true",
        }
    ).prometheus_policy
    assert policy.allowed_urls == ("http://a:9090", "https://b/x")
    assert policy.max_response_bytes == 4096
    assert policy.credentials_over_http is True


def test_prometheus_limits_from_the_command_line() -> None:
    args = parse_args(
        [
            "--prometheus-allowed-url=http://a:9090",
            "--prometheus-allowed-url=https://b",
            "--prometheus-max-response-bytes=2048",
            "--prometheus-credentials-over-http",
        ]
    )
    assert args.prometheus_allowed_url == ["http://a:9090", "https://b"]
    assert args.prometheus_max_response_bytes == 2048
    assert args.prometheus_credentials_over_http is True
    with pytest.raises(SystemExit):
        parse_args(["--prometheus-max-response-bytes=0"])


def test_model_servers_get_default_resources_unless_told_otherwise() -> None:
    assert Config.from_env({}).model_server_resources == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert Config.from_env({"VIGIL_MODEL_SERVER_RESOURCES": "{}"}).model_server_resources == {}
    assert parse_args(['--model-server-resources={"limits": {"memory": "2Gi"}}']).model_server_resources == {
        "limits": {"memory": "2Gi"}
    }
    for bad in ("[]", '{"cpu": "1"}', "not json"):
        with pytest.raises(SystemExit):
            parse_args([f"--model-server-resources={bad}"])


def test_batched_analysis_settings_have_defaults_and_come_from_the_environment() -> None:
    defaults = Config.from_env({})
    assert (defaults.batch_window, defaults.prometheus_concurrency) == (1.0, 16)
    config = Config.from_env({"VIGIL_BATCH_WINDOW_SECONDS": "0", "VIGIL_PROMETHEUS_CONCURRENCY": "4"})
    assert (config.batch_window, config.prometheus_concurrency) == (0.0, 4)
    for bad in ({"VIGIL_BATCH_WINDOW_SECONDS": "-1"}, {"VIGIL_PROMETHEUS_CONCURRENCY": "0"}):
        with pytest.raises(ValueError, match="must be"):
            Config.from_env(bad)


def test_batched_analysis_settings_from_the_command_line() -> None:
    args = parse_args(["--batch-window-seconds=0.5", "--prometheus-concurrency=8"])
    assert (args.batch_window_seconds, args.prometheus_concurrency) == (0.5, 8)
    with pytest.raises(SystemExit):
        parse_args(["--batch-window-seconds=nan"])


def test_api_pacing_has_bounded_defaults_and_comes_from_the_environment() -> None:
    default = Config.from_env({})
    assert default.api_timeout_seconds == 30.0
    assert default.api_max_in_flight == 32
    assert (default.retry_base_seconds, default.retry_cap_seconds) == (1.0, 300.0)
    assert default.status_heartbeat_seconds == 300.0
    assert default.secret_recheck_seconds == 600.0
    config = Config.from_env(
        {
            "VIGIL_API_TIMEOUT": "5s",
            "VIGIL_API_MAX_IN_FLIGHT": "8",
            "VIGIL_RETRY_BASE": "0.5",
            "VIGIL_RETRY_CAP": "60",
            "VIGIL_STATUS_HEARTBEAT": "120",
            "VIGIL_SECRET_RECHECK": "900",
        }
    )
    assert (config.api_timeout_seconds, config.api_max_in_flight) == (5.0, 8)
    assert (config.retry_base_seconds, config.retry_cap_seconds) == (0.5, 60.0)
    assert (config.status_heartbeat_seconds, config.secret_recheck_seconds) == (120.0, 900.0)


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf", "soon"])
def test_a_timeout_must_be_a_positive_number_of_seconds(bad: str) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        Config.from_env({"VIGIL_API_TIMEOUT": bad})
    with pytest.raises(SystemExit):
        parse_args([f"--api-timeout={bad}"])


def test_timeouts_and_the_heartbeat_from_the_command_line() -> None:
    args = parse_args(["--api-timeout=12", "--status-heartbeat=60s"])
    assert (args.api_timeout, args.status_heartbeat) == (12.0, 60.0)
