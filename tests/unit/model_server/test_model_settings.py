"""Settings: flags win over environment variables, which win over defaults; bad values exit 2."""

import pytest

from vigil_model_server.settings import Settings, parse_settings

REQUIRED = ["--model-uri", "/models/iris.joblib", "--model-name", "iris", "--model-version", "3"]


def test_flags_give_the_settings_and_defaults_fill_the_rest() -> None:
    settings = parse_settings([*REQUIRED, "--port", "9000", "--batching", "off"], environ={})

    assert settings == Settings(
        model_uri="/models/iris.joblib", model_name="iris", model_version="3", port=9000, batching=False
    )


def test_environment_variables_are_read_when_no_flag_is_given() -> None:
    environ = {
        "MODEL_URI": "file:///m/model.joblib",
        "MODEL_NAME": "iris",
        "MODEL_VERSION": "7",
        "MODEL_SHA256": "AB" * 32,
        "PORT": "8181",
        "MAX_BODY_BYTES": "1000",
        "BATCH_MAX_SIZE": "8",
        "BATCH_MAX_WAIT_MS": "0.5",
        "ACCURACY_WINDOW": "50",
        "FEEDBACK_CACHE_SIZE": "10",
        "SKOPS_TRUSTED_TYPES": "numpy.float64, sklearn.tree._tree.Tree",
    }

    settings = parse_settings([], environ=environ)

    assert settings.model_uri == "file:///m/model.joblib"
    assert settings.sha256 == "ab" * 32
    assert (settings.port, settings.max_body_bytes, settings.batch_max_size) == (8181, 1000, 8)
    assert (settings.batch_max_wait_ms, settings.accuracy_window, settings.feedback_cache_size) == (
        0.5,
        50,
        10,
    )
    assert settings.skops_trusted_types == ("numpy.float64", "sklearn.tree._tree.Tree")


def test_a_flag_wins_over_its_environment_variable() -> None:
    settings = parse_settings([*REQUIRED, "--port", "9001"], environ={"PORT": "9002", "MODEL_NAME": "other"})

    assert (settings.port, settings.model_name) == (9001, "iris")


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (REQUIRED[2:], {}, "--model-uri (or environment variable MODEL_URI) is required"),
        (REQUIRED, {"PORT": "http"}, "environment variable PORT: invalid literal"),
        ([*REQUIRED, "--sha256", "abc"], {}, "--sha256: must be 64 hexadecimal digits"),
        ([*REQUIRED, "--batch-max-size", "0"], {}, "--batch-max-size: must be at least 1"),
        ([*REQUIRED, "--batching", "maybe"], {}, "--batching: must be true or false"),
        ([*REQUIRED, "--batch-max-wait-ms", "nan"], {}, "--batch-max-wait-ms: must be a number >= 0"),
    ],
)
def test_a_bad_or_missing_value_exits_with_a_message_naming_it(
    argv: list[str], environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(argv, environ=environ)

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_hardening_settings_have_safe_defaults_and_their_variables() -> None:
    defaults = parse_settings(REQUIRED, environ={})
    environ = {
        "MODEL_FEEDBACK_TOKEN_FILE": "/var/run/vigil/feedback/token",
        "MODEL_MAX_FEEDBACK_ROWS": "50",
        "MODEL_MAX_INFER_ROWS": "500",
        "MAX_HEADER_BYTES": "8192",
        "MAX_CONCURRENCY": "64",
    }

    settings = parse_settings(REQUIRED, environ=environ)

    assert defaults.feedback_token_file is None
    assert (defaults.max_feedback_rows, defaults.max_infer_rows) == (1000, 10_000)
    assert (defaults.max_header_bytes, defaults.max_concurrency) == (16384, 0)  # 0: no limit
    assert settings.feedback_token_file == "/var/run/vigil/feedback/token"
    assert (settings.max_feedback_rows, settings.max_infer_rows) == (50, 500)
    assert (settings.max_header_bytes, settings.max_concurrency) == (8192, 64)


def test_the_shadow_settings_are_off_by_default_and_read_from_their_variables() -> None:
    defaults = parse_settings(REQUIRED, environ={})
    environ = {
        "MIRROR_URL": "http://10.96.12.34:8080/",
        "MIRROR_QUEUE_SIZE": "64",
        "MIRROR_TIMEOUT_SECONDS": "0.5",
        "STABLE_VERSION": "2",
    }

    settings = parse_settings(REQUIRED, environ=environ)

    assert (defaults.mirror_url, defaults.stable_version) == (None, None)
    assert (defaults.mirror_queue_size, defaults.mirror_timeout_seconds) == (1024, 2.0)
    assert settings.mirror_url == "http://10.96.12.34:8080"  # no trailing slash: paths are appended
    assert (settings.mirror_queue_size, settings.mirror_timeout_seconds) == (64, 0.5)
    assert settings.stable_version == "2"
    assert parse_settings(REQUIRED, environ={"MIRROR_URL": "", "STABLE_VERSION": ""}) == defaults


@pytest.mark.parametrize(
    "url", ["10.96.12.34:8080", "ftp://candidate", "http://", "http://a b", "http://c?x=1"]
)
def test_a_mirror_url_must_be_an_http_base_url(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings([*REQUIRED, "--mirror-url", url], environ={})

    assert "--mirror-url: must be an http:// or https:// base URL" in capsys.readouterr().err
