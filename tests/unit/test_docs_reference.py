"""docs/reference.md against crds/modeldeployment.yaml, so the reference cannot go stale.

Every spec and status field of the CRD must be documented (as `spec.a.b`, arrays as
`status.history[].version`), every documented field must exist, and the Default, Bounds and
enum values of the spec tables must be the CRD's. The reasons the operator can report must be
explained in docs/troubleshooting.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigil_operator.decisions import Phase, Reason

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = REPO_ROOT / "crds" / "modeldeployment.yaml"
REFERENCE = REPO_ROOT / "docs" / "reference.md"
TROUBLESHOOTING = REPO_ROOT / "docs" / "troubleshooting.md"

# A table row whose first cell is a backticked spec or status path.
ROW = re.compile(r"^\|\s*`((?:spec|status)(?:\.[A-Za-z0-9]+(?:\[\])?)*)`\s*\|(.*)\|\s*$")
# The cells of a row: split on "|" that is not escaped as "\|".
CELL_SEPARATOR = re.compile(r"(?<!\\)\|")
# A documented default is a backticked literal at the start of the Default cell.
DEFAULT_LITERAL = re.compile(r"^`([^`]*)`")
# Reasons the operator reports that are not members of decisions.Reason.
SHELL_REASONS = ("InvalidSpec",)


def _crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    (version,) = crd["spec"]["versions"]
    return version


# spec.podTemplate's fields are Kubernetes' own (env, volumes, tolerations, ...): each has a row,
# and below it the Kubernetes API reference, which the row links, documents their insides.
KUBERNETES_FIELD = re.compile(r"^spec\.podTemplate\.(metadata|spec)\.[A-Za-z]+$")


def _fields(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named property below `schema` with its path; array items as `path[]`.

    Maps (`additionalProperties`) are leaves: their keys are the user's, not the schema's.
    """
    for name, prop in schema.get("properties", {}).items():
        child = f"{path}.{name}"
        yield child, prop
        if KUBERNETES_FIELD.match(child):
            continue
        if prop.get("type") == "array" and "items" in prop:
            yield from _fields(prop["items"], f"{child}[]")
        else:
            yield from _fields(prop, child)


def _rows(text: str) -> dict[str, list[str]]:
    """Documented field path -> the cells after the first, from every table row of the doc."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            path, rest = match.groups()
            assert path not in rows, f"{path} has two rows in {REFERENCE.name}"
            rows[path] = [cell.strip() for cell in CELL_SEPARATOR.split(rest)]
    return rows


ROOT = _crd_schema()["schema"]["openAPIV3Schema"]
SPEC_FIELDS = dict(_fields(ROOT["properties"]["spec"], "spec"))
STATUS_FIELDS = dict(_fields(ROOT["properties"]["status"], "status"))
DOC = REFERENCE.read_text()
ROWS = _rows(DOC)
# Spec tables: | Field | Type | Default | Bounds | Description |
SPEC_ROWS = {path: cells for path, cells in ROWS.items() if path.startswith("spec")}


def test_the_crd_has_the_fields_this_test_expects() -> None:
    """Guards the walk itself: a broken walk would make every other test pass vacuously."""
    assert "spec.analysis.minSamples" in SPEC_FIELDS
    assert "spec.model.uri" in SPEC_FIELDS
    assert "status.lastCheck.query" in STATUS_FIELDS
    assert "status.conditions[].reason" in STATUS_FIELDS
    assert "status.history[].outcome" in STATUS_FIELDS


@pytest.mark.parametrize("path", sorted(SPEC_FIELDS))
def test_every_spec_field_has_a_row(path: str) -> None:
    assert path in SPEC_ROWS, f"docs/reference.md has no table row for `{path}`"


@pytest.mark.parametrize("path", sorted(STATUS_FIELDS))
def test_every_status_field_has_a_row(path: str) -> None:
    assert path in ROWS, f"docs/reference.md has no table row for `{path}`"


def test_every_documented_field_exists_in_the_crd() -> None:
    unknown = sorted(set(ROWS) - set(SPEC_FIELDS) - set(STATUS_FIELDS))
    assert not unknown, f"docs/reference.md documents fields the CRD does not have: {unknown}"


@pytest.mark.parametrize("path", sorted(SPEC_FIELDS))
def test_the_documented_default_is_the_crds(path: str) -> None:
    cells = SPEC_ROWS[path]
    assert len(cells) == 4, f"`{path}`: expected Type, Default, Bounds, Description; got {cells}"
    default_cell = cells[1]
    literal = DEFAULT_LITERAL.match(default_cell)
    schema = SPEC_FIELDS[path]
    if "default" in schema:
        assert literal, f"`{path}`: the CRD's default is {schema['default']!r}; the doc says {default_cell!r}"
        documented = yaml.safe_load(literal.group(1))
        assert documented == schema["default"], f"`{path}`: doc {documented!r}, CRD {schema['default']!r}"
        assert type(documented) is type(schema["default"]), f"`{path}`: {documented!r} has the wrong type"
    else:
        assert not literal, f"`{path}` has no default in the CRD; the doc says {default_cell!r}"


@pytest.mark.parametrize("path", sorted(SPEC_FIELDS))
def test_the_documented_bounds_are_the_crds(path: str) -> None:
    schema, bounds = SPEC_FIELDS[path], SPEC_ROWS[path][2]
    for key in ("minimum", "maximum", "maxLength", "maxProperties"):
        if key in schema:
            assert str(schema[key]) in bounds, f"`{path}`: {key} {schema[key]} is not in {bounds!r}"
    for value in schema.get("enum", []):
        assert f"`{value}`" in bounds, f"`{path}`: enum value {value!r} is not in {bounds!r}"


def test_required_spec_fields_are_documented_as_required() -> None:
    spec = ROOT["properties"]["spec"]
    required = {f"spec.{name}" for name in spec.get("required", [])}
    required |= {f"spec.model.{name}" for name in spec["properties"]["model"].get("required", [])}
    for path in required:
        assert SPEC_ROWS[path][1] == "required", f"`{path}` is required by the CRD"


def test_printer_columns_are_documented() -> None:
    for column in _crd_schema()["additionalPrinterColumns"]:
        assert f"`{column['name']}`" in DOC, f"printer column {column['name']} is not documented"
        assert f"`{column['jsonPath']}`" in DOC, f"printer column path {column['jsonPath']} is not documented"


def test_phases_and_condition_types_are_documented() -> None:
    status = ROOT["properties"]["status"]["properties"]
    assert set(status["phase"]["enum"]) == {phase.value for phase in Phase}
    for phase in Phase:
        assert f"`{phase.value}`" in DOC
    for kind in ("Ready", "Progressing", "Degraded", "RolledBack"):
        assert f"| `{kind}` |" in DOC, f"condition {kind} has no row in the conditions table"


@pytest.mark.parametrize("reason", [*(reason.value for reason in Reason), *SHELL_REASONS])
def test_every_reason_is_explained_in_troubleshooting(reason: str) -> None:
    assert f"`{reason}`" in TROUBLESHOOTING.read_text(), f"docs/troubleshooting.md does not explain {reason}"
