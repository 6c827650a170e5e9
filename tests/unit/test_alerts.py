"""The chart's alerts (templates/prometheusrule.yaml), checked by the real `promtool`.

The rule file is the chart's own render (`helm template`), so what is tested is what users
install. Each alert has a `promtool test rules` file in tests/unit/alerts/ and a runbook section
in docs/troubleshooting.md that its runbook_url points at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_chart import CHART, HELM, by_kind, helm, one, render

REPO_ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).parent / "alerts"
TROUBLESHOOTING = REPO_ROOT / "docs" / "troubleshooting.md"
PROMTOOL = shutil.which("promtool")
RULES_FILE = "vigil-rules.yaml"  # what the cases' rule_files name
# The values the cases are written for: the ServiceMonitor on, so the operator's job is its Service.
ALERT_VALUES = ("alerts.enabled=true", "metrics.serviceMonitor.enabled=true")

pytestmark = [
    pytest.mark.skipif(not HELM.exists(), reason="bin/helm missing: run `make cluster-tools`"),
    pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: run `make prometheus` (Debian's package)"),
]


def prometheus_rule(env: dict[str, str], *sets: str) -> dict[str, Any]:
    return one(render(env, *sets), "PrometheusRule")


def rules(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, text=True, capture_output=True, check=False)


@pytest.fixture(scope="module")
def rule_dir(helm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered rule file beside copies of the cases, as their `rule_files` expect."""
    folder = tmp_path_factory.mktemp("rules")
    spec = prometheus_rule(helm_env, *ALERT_VALUES)["spec"]
    (folder / RULES_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
    for case in CASES.glob("*.yaml"):
        shutil.copy(case, folder / case.name)
    return folder


def test_the_rendered_rules_pass_promtool_check(rule_dir: Path) -> None:
    result = promtool("check", "rules", RULES_FILE, cwd=rule_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.glob("*.yaml")))
def test_promtool_test_rules(rule_dir: Path, case: str) -> None:
    result = promtool("test", "rules", case, cwd=rule_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_promtool_case_and_a_runbook(helm_env: dict[str, str]) -> None:
    tested = {
        test["alertname"]
        for case in CASES.glob("*.yaml")
        for group in yaml.safe_load(case.read_text())["tests"]
        for test in group.get("alert_rule_test", [])
    }
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line[4:].strip().lower()).replace(" ", "-")
        for line in TROUBLESHOOTING.read_text().splitlines()
        if line.startswith("### ")
    }
    alerts = rules(prometheus_rule(helm_env, *ALERT_VALUES))
    assert set(alerts) == {
        "VigilRolledBack",
        "VigilMetricsUnavailable",
        "VigilDegraded",
        "VigilOperatorDown",
        "VigilAccuracyNearThreshold",
    }
    assert set(alerts) <= tested
    for name, rule in alerts.items():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://github.com/vigil-dev/vigil/blob/main/docs/troubleshooting.md#")
        assert url.split("#", 1)[1] in headings, f"{name}: no runbook section for {url}"
        assert {"summary", "description"} <= set(rule["annotations"])
        assert rule["labels"]["severity"] in ("warning", "critical")


def test_alerts_are_opt_in(helm_env: dict[str, str]) -> None:
    assert not by_kind(render(helm_env), "PrometheusRule")
    assert not by_kind(render(helm_env, "metrics.serviceMonitor.enabled=true"), "PrometheusRule")


def test_durations_severities_margin_and_labels_are_values(helm_env: dict[str, str]) -> None:
    rule = prometheus_rule(
        helm_env,
        *ALERT_VALUES,
        "monitoring.labels.release=kps",
        "alerts.labels.role=alert-rules",
        "alerts.additionalLabels.team=ml",
        "alerts.operatorDown.for=10m",
        "alerts.metricsUnavailable.for=15m",
        "alerts.rolledBack.window=1h",
        "alerts.degraded.severity=page",
        "alerts.nearThreshold.margin=0.05",
        "alerts.runbookUrl=https://wiki.example/vigil",
    )
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["metadata"]["labels"]["role"] == "alert-rules"
    alerts = rules(rule)
    assert alerts["VigilOperatorDown"]["for"] == "10m"
    assert alerts["VigilMetricsUnavailable"]["for"] == "15m"
    assert "[1h]" in alerts["VigilRolledBack"]["expr"]
    assert alerts["VigilDegraded"]["labels"]["severity"] == "page"
    assert "vigil_operator_threshold + 0.05" in alerts["VigilAccuracyNearThreshold"]["expr"]
    assert all(a["labels"]["team"] == "ml" for a in alerts.values())
    assert (
        alerts["VigilRolledBack"]["annotations"]["runbook_url"]
        == "https://wiki.example/vigil#vigilrolledback"
    )


@pytest.mark.parametrize(
    ("values", "job"),
    [
        (["metrics.serviceMonitor.enabled=true"], "vigil-operator-metrics"),
        (["metrics.podMonitor.enabled=true"], "vigil-system/vigil-operator"),
        (
            ["metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true"],
            "vigil-operator-metrics|vigil-system/vigil-operator",
        ),
        (["alerts.operatorJob=kubernetes-pods"], "kubernetes-pods"),
    ],
)
def test_the_operator_down_alert_watches_the_job_that_scrapes_the_operator(
    helm_env: dict[str, str], values: list[str], job: str
) -> None:
    expr = rules(prometheus_rule(helm_env, "alerts.enabled=true", *values))["VigilOperatorDown"]["expr"]
    assert expr == f'absent(up{{job=~"{job}", namespace="vigil-system"}} == 1)'


def test_alerts_without_a_way_to_scrape_the_operator_fail_with_a_message(helm_env: dict[str, str]) -> None:
    result = helm(helm_env, "template", "vigil", str(CHART), "--set", "alerts.enabled=true", check=False)
    assert result.returncode != 0
    assert "set alerts.operatorJob" in result.stderr
