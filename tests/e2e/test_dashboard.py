"""The chart's Grafana dashboard against a real Prometheus after a rollout and a rollback.

Every panel's query and every annotation query, taken from the ConfigMap `helm template` renders
(so what is tested is what users install), with the dashboard's variables filled in as Grafana
would, runs as a range query over the scenario: each must parse and return data. The operator is
scraped like the model servers, so the operator's panels have its real series.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from harness.cluster import BIN_DIR, REPO_ROOT
from harness.models import TrainedModel, iris
from harness.ports import free_port
from harness.waiting import wait_for

from .conftest import Stack, condition, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus]
CHART = REPO_ROOT / "charts" / "vigil"
INFERENCES = 30
STEP = 2.0  # seconds between the points of a range query


def dashboard_from_the_chart(tmp_path: Path) -> dict[str, Any]:
    """The dashboard as `helm template` renders it into its ConfigMap."""
    env = {f"HELM_{kind}_HOME": str(tmp_path / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    rendered = subprocess.run(
        [str(BIN_DIR / "helm"), "template", "vigil", str(CHART), "--set", "dashboards.enabled=true"],
        env={**env, "PATH": "/usr/bin:/bin", "KUBECONFIG": str(tmp_path / "no-cluster")},
        text=True,
        capture_output=True,
        check=True,
    ).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    [config_map] = [d for d in documents if d["kind"] == "ConfigMap" and "vigil.json" in d["data"]]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    return json.loads(config_map["data"]["vigil.json"])


def queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Every PromQL of the dashboard by where it is: panel targets and annotations."""
    found = {
        f"panel {panel['title']!r} {target['refId']}": target["expr"]
        for panel in dashboard["panels"]
        for target in panel["targets"]
    }
    found |= {f"annotation {a['name']!r}": a["expr"] for a in dashboard["annotations"]["list"]}
    return found


def fill_in(expr: str, values: dict[str, str]) -> str:
    """The variables as Grafana substitutes them; any other `$` is a variable nobody defined."""
    filled = re.sub(r"\$(\w+)", lambda m: values.get(m.group(1), m.group(0)), expr)
    assert "$" not in filled, f"an unknown variable in {expr!r}"
    return filled


def infer(stack: Stack, count: int) -> None:
    """Real inference requests to the serving release, for the request, error and latency panels."""
    features, _ = iris()
    server = wait_for(lambda: stack.kubelet.serving(), timeout=30, what="a serving model server")[0]
    for row in features[:count]:
        response = httpx.post(
            f"{server.url}/v2/models/{server.key.name}/infer",
            json={"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": row.tolist()}]},
            timeout=10,
        )
        assert response.status_code == 200, response.text


def test_every_panel_and_annotation_query_returns_data_after_a_rollout_and_a_rollback(
    stack: Stack, models: dict[str, TrainedModel], tmp_path: Path
) -> None:
    dashboard = dashboard_from_the_chart(tmp_path)
    started = time.time()
    metrics_port = free_port()
    stack.prometheus.add_jobs(
        {
            "job_name": "vigil-operator",
            "scrape_interval": "1s",
            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
        }
    )
    stack.start_operator(metrics_port=metrics_port)
    url = stack.prometheus.url
    stack.apply(model_deployment("iris", stack.namespace, "v1", models["good"], prometheus_url=url))
    stack.wait_status("iris", promoted("v1"), what="v1 promoted")
    stack.apply(model_deployment("iris", stack.namespace, "v2", models["bad"], prometheus_url=url))
    status = stack.wait_status("iris", lambda s: s.get("phase") == "RolledBack", what="v2 rolled back")
    assert condition(status, "RolledBack")["reason"] == "AnalysisFailed"
    # Two batches, each scraped, so the latency and request rates have two samples to work with.
    requests = f'sum(vigil_model_requests_total{{namespace="{stack.namespace}", endpoint="infer"}})'
    first = INFERENCES // 2
    infer(stack, first)
    stack.prometheus.wait_for_value(requests, lambda value: value >= first)
    infer(stack, INFERENCES - first)
    stack.prometheus.wait_for_value(requests, lambda value: value >= INFERENCES)
    stack.prometheus.wait_for_value(
        f'sum(vigil_operator_rollbacks_total{{namespace="{stack.namespace}", name="iris"}})',
        lambda value: value >= 1,
    )
    # The last step of every range query at exactly this moment, after the last scrape seen above.
    ended = time.time()
    started = ended - STEP * math.ceil((ended - started) / STEP)

    # As Grafana fills them in for this namespace and object; a rate interval of a few scrapes.
    values = {"namespace": stack.namespace, "name": "iris", "window": "1m", "__rate_interval": "15s"}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"]["query"])
            assert selector is not None
            result = stack.prometheus.query(fill_in(selector.group(1), values))
            assert {series["metric"][selector.group(2)] for series in result} >= {values[variable["name"]]}

    empty = []
    for where, expr in queries(dashboard).items():
        result = stack.prometheus.query_range(fill_in(expr, values), started, ended, step=STEP)
        if not result:
            empty.append(where)
    assert not empty, f"no data for: {empty}"
