"""Static checks of crds/modeldeployment.yaml (no cluster needed).

The API server itself checks that the schema is structural and the CEL rules compile
(tests/integration/test_crd_validation.py); here we check what it does not enforce.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = REPO_ROOT / "crds" / "modeldeployment.yaml"
SAMPLE_PATH = REPO_ROOT / "manifests" / "samples" / "modeldeployment.yaml"

# The one duration syntax: a Prometheus duration that Go's time.ParseDuration (CEL's
# duration()) also accepts.
DURATION_PATTERN = "^([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?([0-9]{1,6}ms)?$"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    return only


@pytest.fixture(scope="module")
def root(version: dict[str, Any]) -> dict[str, Any]:
    return version["schema"]["openAPIV3Schema"]


def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named property below `schema` (array items included), with its path."""
    for name, prop in schema.get("properties", {}).items():
        child = f"{path}.{name}"
        yield child, prop
        yield from walk(prop, child)
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def all_rules(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for rule in schema.get("x-kubernetes-validations", []):
        yield path or "<root>", rule
    for name, prop in schema.get("properties", {}).items():
        yield from all_rules(prop, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from all_rules(schema[key], f"{path}[]")


def test_names_and_scope(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "modeldeployments.vigil.dev"
    spec = crd["spec"]
    assert spec["group"] == "vigil.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "ModelDeployment",
        "listKind": "ModelDeploymentList",
        "plural": "modeldeployments",
        "singular": "modeldeployment",
        "shortNames": ["mdep"],
        "categories": ["vigil"],
    }
    assert "mdep" in spec["names"]["shortNames"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True


def test_status_subresource(version: dict[str, Any]) -> None:
    assert version["subresources"] == {"status": {}}


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = [
        (c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
        for c in version["additionalPrinterColumns"]
    ]
    assert columns == [
        ("VERSION", "string", ".spec.version", 0),
        ("CURRENT", "string", ".status.currentVersion", 1),
        ("STABLE", "string", ".status.stableVersion", 0),
        ("PHASE", "string", ".status.phase", 0),
        ("STAGE", "string", ".status.strategy.stage", 0),
        ("SHARE", "integer", ".status.strategy.candidatePercent", 0),
        ("ACCURACY", "number", ".status.lastCheck.value", 0),
        ("AGE", "date", ".metadata.creationTimestamp", 0),
    ]


def test_printer_columns_point_at_declared_fields(root: dict[str, Any], version: dict[str, Any]) -> None:
    declared = {path for path, _ in walk(root, "")}
    for column in version["additionalPrinterColumns"]:
        if not column["jsonPath"].startswith(".metadata."):
            assert column["jsonPath"] in declared, column


@pytest.mark.parametrize("part", ["spec", "status"])
def test_every_property_has_a_description(root: dict[str, Any], part: str) -> None:
    top = root["properties"][part]
    assert top.get("description")
    missing = [path for path, prop in walk(top, part) if not str(prop.get("description", "")).strip()]
    assert not missing, f"properties without a description: {missing}"


def test_required_fields_and_defaults(root: dict[str, Any]) -> None:
    spec = root["properties"]["spec"]
    assert root["required"] == ["spec"]
    assert spec["required"] == ["version", "model"]
    assert spec["properties"]["model"]["required"] == ["uri"]
    # Unset replicas stay unset, so the operator never owns them (an HPA does).
    assert "default" not in spec["properties"]["replicas"]
    assert spec["properties"]["progressDeadlineSeconds"]["default"] == 600
    analysis = spec["properties"]["analysis"]
    assert analysis["default"] == {}, "analysis must default to {} so that its own defaults apply"
    defaults = {name: prop.get("default") for name, prop in analysis["properties"].items()}
    assert defaults == {
        "prometheusUrl": None,
        "credentialsSecret": None,
        "metric": "accuracy",
        "query": None,
        "threshold": 0.9,
        "interval": "30s",
        "window": "5m",
        "queryTimeout": "10s",
        "evaluationDelay": "30s",
        "minSamples": 100,
        "failureLimit": 3,
        "successLimit": 3,
        "afterPromotion": True,
        "errorLimit": 5,
        "confidence": 0.95,
        "drop": 0.05,
    }


def test_status_is_typed(root: dict[str, Any]) -> None:
    status = root["properties"]["status"]
    assert not status.get("x-kubernetes-preserve-unknown-fields")
    assert status["properties"]["phase"]["enum"] == [
        "Progressing",
        "Analyzing",
        "Promoted",
        "RolledBack",
        "Degraded",
    ]
    assert status["properties"]["history"]["maxItems"] == 20
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_durations_share_one_pattern_and_cel_guards_it(root: dict[str, Any]) -> None:
    analysis = root["properties"]["spec"]["properties"]["analysis"]
    for name in ("interval", "window", "queryTimeout"):
        prop = analysis["properties"][name]
        assert prop["pattern"] == DURATION_PATTERN, name
        assert re.fullmatch(DURATION_PATTERN, prop["default"]), name
    # duration() fails on anything the pattern rejects, and on "" (which the pattern matches):
    # every rule that calls duration(x) must be guarded by `x == '' || !x.matches(<pattern>) || ...`,
    # so a bad value gets only the pattern's (or minLength's) error.
    for path, rule in all_rules(root):
        text = rule["rule"]
        if "duration(" in text:
            guarded = re.findall(r"(self(?:\.\w+)?) == '' \|\| !\1\.matches\('([^']*)'\) \|\|", text)
            called = set(re.findall(r"duration\((self(?:\.\w+)?)\)", text))
            assert called, f"{path}: {text}"
            assert called <= {value for value, _ in guarded}, f"{path}: unguarded duration() in {text}"
            assert {pattern for _, pattern in guarded} == {DURATION_PATTERN}, f"{path}: guard differs"


def test_every_cel_rule_names_its_field(root: dict[str, Any]) -> None:
    # The API server prefixes the error with the field path (fieldPath, or where the rule
    # sits); the message repeats the field's name, e.g. "analysis.window (10s) must ...".
    for path, rule in all_rules(root):
        full = path + rule.get("fieldPath", "") if path != "<root>" else ".metadata.name"
        field = ".".join(full.split(".")[-2:])
        message = rule.get("messageExpression") or rule.get("message") or ""
        assert field in message, (full, message)
        assert rule.get("reason") == "FieldValueInvalid", full


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("30s", True),
        ("5m", True),
        ("1h30m", True),
        ("500ms", True),
        ("1h2m3s4ms", True),
        ("0s", True),
        ("", False),
        ("30", False),
        ("1d", False),
        ("1.5h", False),
        ("30s5m", False),
        ("-1s", False),
        ("30 s", False),
        ("1234567h", False),
    ],
)
def test_duration_pattern(value: str, ok: bool) -> None:
    # Go's time.ParseDuration accepts every value matched here (h/m/s/ms, at most
    # 6 digits each, so no overflow): CEL's duration() never errors on an accepted value.
    # minLength 2 rules out the empty string, which the all-optional pattern matches.
    assert (len(value) >= 2 and re.fullmatch(DURATION_PATTERN, value) is not None) is ok


def test_sample_uses_only_declared_fields(root: dict[str, Any]) -> None:
    sample = yaml.safe_load(SAMPLE_PATH.read_text())
    assert sample["apiVersion"] == "vigil.dev/v1alpha1"
    assert sample["kind"] == "ModelDeployment"

    def check(value: Any, schema: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in schema:
            for key, child in value.items():
                assert key in schema["properties"], f"{path}.{key} is not in the schema"
                check(child, schema["properties"][key], f"{path}.{key}")

    check(sample["spec"], root["properties"]["spec"], "spec")


def test_unpinned_pickles_are_off_by_default_and_the_field_warns(root: dict[str, Any]) -> None:
    from vigil_operator.releases import parse_spec

    field = root["properties"]["spec"]["properties"]["model"]["properties"]["allowUnpinnedPickle"]
    assert field["type"] == "boolean"
    assert field["default"] is False
    assert "runs code" in field["description"]

    def allowed(model: dict[str, Any]) -> bool:
        spec = {"version": "v1", "model": model}
        return parse_spec(spec, default_image="i", default_prometheus_url="http://p").allow_unpinned_pickle

    assert allowed({"uri": "/m.joblib"}) is False
    assert allowed({"uri": "/m.joblib", "allowUnpinnedPickle": True}) is True
