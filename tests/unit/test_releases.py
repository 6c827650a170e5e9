"""Durations, releases and the typed spec (vigil_operator.releases)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil_operator.releases import (
    DEFAULT_CANARY_STEPS,
    DEFAULT_SHADOW_MARGIN,
    AnalysisSpec,
    InvalidSpec,
    ModelDeploymentSpec,
    Release,
    StrategySpec,
    StrategyType,
    format_duration,
    parse_duration,
    parse_spec,
)

DEFAULT_IMAGE = "ghcr.io/vigil/vigil-model-server:0.1.0"
DEFAULT_PROMETHEUS = "http://prometheus.monitoring:9090"
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def parse(spec: dict[str, Any], prometheus: str = DEFAULT_PROMETHEUS) -> ModelDeploymentSpec:
    return parse_spec(spec, default_image=DEFAULT_IMAGE, default_prometheus_url=prometheus)


def minimal(**extra: Any) -> dict[str, Any]:
    return {"version": "v2", "model": {"uri": "http://models.ml.svc/iris/v2/model.joblib"}, **extra}


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("1m30s500ms", 90.5),
        ("1.5m", 90.0),
        ("0s", 0.0),
        (" 10s ", 10.0),
    ],
)
def test_durations_in_prometheus_form(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "30", "s", "5 m", "-5m", "5M", "1w", "five minutes", "5m junk", "1h 30m"]
)
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration") as raised:
        parse_duration(text)
    assert "use forms like 30s, 5m, 1h30m" in str(raised.value)


@pytest.mark.parametrize(
    ("seconds", "text"), [(300.0, "300s"), (90.2, "91s"), (0.001, "1s"), (0.0, "1s"), (-3.0, "1s")]
)
def test_a_promql_range_is_whole_seconds_rounded_up_and_never_empty(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=1.0, max_value=10**7))
def test_a_formatted_range_covers_the_seconds_and_no_more_than_one_extra(seconds: float) -> None:
    covered = parse_duration(format_duration(seconds))
    assert 0 <= covered - seconds < 1


# --- releases -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "release",
    [Release("v1", "file:///m.joblib", "img"), Release("v2", "http://m/v2.joblib", "img:1", SHA256)],
)
def test_a_release_round_trips_through_its_dict(release: Release) -> None:
    assert Release.from_dict(release.to_dict()) == release


def test_a_release_dict_leaves_out_a_missing_checksum() -> None:
    assert Release("v1", "u", "i").to_dict() == {"version": "v1", "uri": "u", "image": "i"}


@pytest.mark.parametrize("data", [None, {}, {"uri": "u", "image": "i"}, {"version": ""}])
def test_no_version_no_release(data: dict[str, Any] | None) -> None:
    assert Release.from_dict(data) is None


# --- the typed spec ---------------------------------------------------------------------------


def test_a_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse(minimal())
    assert spec.release == Release("v2", "http://models.ml.svc/iris/v2/model.joblib", DEFAULT_IMAGE)
    assert spec.analysis == AnalysisSpec(prometheus_url=DEFAULT_PROMETHEUS)
    analysis = spec.analysis
    assert (analysis.threshold, analysis.interval, analysis.window) == (0.9, 30.0, 300.0)
    assert (analysis.min_samples, analysis.failure_limit, analysis.success_limit) == (100, 3, 3)
    assert (analysis.after_promotion, analysis.error_limit, analysis.confidence) == (True, 5, 0.95)
    assert analysis.query_timeout == 10.0
    assert analysis.builtin
    assert (spec.replicas, spec.progress_deadline_seconds) == (None, 600)  # None: never written
    assert (spec.resources, spec.pod_labels, spec.pod_annotations) == ({}, {}, {})


def test_every_field_of_a_full_spec_is_read() -> None:
    spec = parse(
        {
            "version": "v3",
            "model": {"uri": "s3://models/iris/v3.joblib", "sha256": SHA256},
            "image": "registry.example/custom:1.0",
            "replicas": 4,
            "progressDeadlineSeconds": 90,
            "resources": {"limits": {"memory": "1Gi"}},
            "podLabels": {"team": "fraud"},
            "podAnnotations": {"a": "b"},
            "analysis": {
                "prometheusUrl": "https://prom.example:9090",
                "credentialsSecret": "prom-reader",
                "query": "avg(my_accuracy{version='{{version}}'})",
                "threshold": 0.8,
                "interval": "1m",
                "window": "15m",
                "minSamples": 50,
                "failureLimit": 2,
                "successLimit": 5,
                "afterPromotion": False,
                "errorLimit": 7,
                "confidence": 0.99,
                "queryTimeout": "3s",
            },
        }
    )
    assert spec.release == Release("v3", "s3://models/iris/v3.joblib", "registry.example/custom:1.0", SHA256)
    assert spec.analysis == AnalysisSpec(
        prometheus_url="https://prom.example:9090",
        credentials_secret="prom-reader",
        query="avg(my_accuracy{version='{{version}}'})",
        threshold=0.8,
        interval=60.0,
        window=900.0,
        min_samples=50,
        failure_limit=2,
        success_limit=5,
        after_promotion=False,
        error_limit=7,
        confidence=0.99,
        query_timeout=3.0,
    )
    assert not spec.analysis.builtin
    assert (spec.replicas, spec.progress_deadline_seconds) == (4, 90)
    assert spec.resources == {"limits": {"memory": "1Gi"}}
    assert (spec.pod_labels, spec.pod_annotations) == ({"team": "fraud"}, {"a": "b"})


def test_empty_optional_fields_fall_back_to_the_operators_defaults() -> None:
    spec = parse(minimal(image="", analysis={"prometheusUrl": "", "query": "", "credentialsSecret": ""}))
    assert spec.release.image == DEFAULT_IMAGE
    assert spec.analysis.prometheus_url == DEFAULT_PROMETHEUS
    assert spec.analysis.query is None
    assert spec.analysis.credentials_secret is None
    assert parse(minimal(analysis=None)).analysis == AnalysisSpec(prometheus_url=DEFAULT_PROMETHEUS)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"model": {"uri": "file:///m.joblib"}}, "spec.version"),
        (minimal(version=""), "spec.version"),
        ({"version": "v1"}, "spec.model"),
        ({"version": "v1", "model": {"sha256": SHA256}}, "spec.model.uri"),
        (minimal(analysis={"interval": "soon"}), "spec.analysis.interval"),
        (minimal(analysis={"window": "5 minutes"}), "spec.analysis.window"),
        (minimal(analysis={"queryTimeout": "10"}), "spec.analysis.queryTimeout"),
        (minimal(analysis={"threshold": "high"}), "spec.analysis.threshold"),
        (minimal(analysis={"minSamples": "many"}), "spec.analysis.minSamples"),
        (minimal(analysis={"failureLimit": None}), "spec.analysis.failureLimit"),
        (minimal(analysis={"confidence": [0.9]}), "spec.analysis.confidence"),
        (minimal(replicas="two"), "spec.replicas"),
        (minimal(progressDeadlineSeconds="10m"), "spec.progressDeadlineSeconds"),
    ],
)
def test_a_spec_that_cannot_be_acted_on_is_refused_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        parse(spec)
    assert str(raised.value).startswith(field)


def test_a_bad_value_is_quoted_in_the_message() -> None:
    with pytest.raises(InvalidSpec, match=r"^spec\.analysis\.interval: not a duration: 'soon'"):
        parse(minimal(analysis={"interval": "soon"}))


def test_without_any_prometheus_url_the_spec_is_refused() -> None:
    with pytest.raises(InvalidSpec, match=r"^spec\.analysis\.prometheusUrl is empty"):
        parse(minimal(), prometheus="")
    assert parse(minimal(analysis={"prometheusUrl": "http://p:9090"}), prometheus="").analysis.prometheus_url


# --- spec.strategy ---------------------------------------------------------------------------


def test_without_a_strategy_the_rollout_replaces_the_release_as_before() -> None:
    strategy = parse(minimal()).strategy
    assert strategy == StrategySpec()
    assert strategy.type is StrategyType.REPLACE


def test_a_canary_strategy_is_read_with_its_steps() -> None:
    spec = parse(
        minimal(strategy={"type": "Canary", "canary": {"steps": [{"percent": 10}, {"percent": 50}]}})
    )
    assert spec.strategy.type is StrategyType.CANARY
    assert spec.strategy.canary_steps == (10, 50)


def test_a_shadow_strategy_is_read_with_its_margin_and_what_follows_it() -> None:
    spec = parse(
        minimal(
            strategy={
                "type": "Shadow",
                "shadow": {"margin": 0.02, "next": "Canary"},
                "canary": {"steps": [{"percent": 25}]},
            }
        )
    )
    assert spec.strategy == StrategySpec(
        type=StrategyType.SHADOW, canary_steps=(25,), shadow_margin=0.02, after_shadow=StrategyType.CANARY
    )


def test_a_strategy_without_its_settings_gets_the_documented_defaults() -> None:
    assert parse(minimal(strategy={"type": "Canary"})).strategy.canary_steps == DEFAULT_CANARY_STEPS
    shadow = parse(minimal(strategy={"type": "Shadow", "shadow": {}})).strategy
    assert shadow.shadow_margin == DEFAULT_SHADOW_MARGIN == 0.01
    assert shadow.after_shadow is StrategyType.REPLACE


@pytest.mark.parametrize(
    ("strategy", "field"),
    [
        ("Shadow", "spec.strategy must be an object"),
        ({"type": "BlueGreen"}, "spec.strategy.type: unknown strategy 'BlueGreen'"),
        ({"type": "Canary", "canary": []}, "spec.strategy.canary must be an object"),
        ({"type": "Canary", "canary": {"steps": []}}, "spec.strategy.canary.steps must be a list of 1 to 10"),
        ({"type": "Canary", "canary": {"steps": [{"percent": 10}] * 11}}, "1 to 10 steps"),
        (
            {"type": "Canary", "canary": {"steps": [{"percent": 0}]}},
            "steps[0].percent must be a whole number",
        ),
        ({"type": "Canary", "canary": {"steps": [{"percent": 100}]}}, "steps[0].percent"),
        ({"type": "Canary", "canary": {"steps": [{"percent": 12.5}]}}, "steps[0].percent"),
        ({"type": "Canary", "canary": {"steps": [{"percent": True}]}}, "steps[0].percent"),
        (
            {"type": "Canary", "canary": {"steps": [{"weight": 10}]}},
            "steps[0] must be an object with percent",
        ),
        (
            {"type": "Canary", "canary": {"steps": [{"percent": 50}, {"percent": 50}]}},
            "steps[1].percent must be more than the step before (50)",
        ),
        ({"type": "Shadow", "shadow": {"margin": 0.5}}, "spec.strategy.shadow.margin must be from 0 to 0.2"),
        ({"type": "Shadow", "shadow": {"margin": -0.01}}, "spec.strategy.shadow.margin"),
        ({"type": "Shadow", "shadow": {"margin": "a lot"}}, "spec.strategy.shadow.margin"),
        (
            {"type": "Shadow", "shadow": {"next": "Shadow"}},
            "spec.strategy.shadow.next must be Replace or Canary",
        ),
        ({"type": "Shadow", "shadow": {"next": "Later"}}, "spec.strategy.shadow.next: unknown strategy"),
        ({"type": "Replace", "canary": {}}, "spec.strategy.canary is set but unused"),
        ({"type": "Shadow", "canary": {}}, "spec.strategy.canary is set but unused"),
        ({"type": "Canary", "shadow": {}}, "spec.strategy.shadow is set but unused"),
    ],
)
def test_a_strategy_that_cannot_be_acted_on_is_refused_naming_the_field(strategy: Any, field: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        parse(minimal(strategy=strategy))
    assert field in str(refused.value)


def test_the_shadow_comparison_uses_the_analysis_evidence_bar() -> None:
    analysis = parse(minimal(analysis={"minSamples": 250, "confidence": 0.9})).analysis
    criteria = analysis.comparison_criteria(0.02)
    assert (criteria.margin, criteria.min_samples, criteria.confidence) == (0.02, 250, 0.9)
