"""What the real-node scenario measures of monitoring the kube-prometheus-stack way.

- `count_a_batch`: a known batch of labels sent through the Service while the operator watches a
  version; what the model servers counted (their own /metrics, read from each pod) and what the
  operator's checks counted (`status.watch.samples`) must both grow by exactly that batch;
- `targets`, `feedback_series`: what Prometheus scrapes, from its API.

Between two readings nothing else sends labels, so both counts hold still once Prometheus has
scraped the last label and a check has run after that scrape.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness.models import iris
from harness.realstack import MODELS_NAMESPACE, RealStack
from harness.waiting import wait_for

FEEDBACK_TOTAL = "vigil_model_feedback_total"


def servers_counted(stack: RealStack, selector: str, version: str) -> int:
    """The labelled predictions the Ready pods of `version` counted, from each pod's /metrics."""
    total = 0.0
    with httpx.Client(timeout=5) as client:
        for pod in stack.pods(selector):
            if pod["metadata"]["labels"].get("vigil.dev/version") != version:
                continue
            port = next(
                p["containerPort"] for p in pod["spec"]["containers"][0]["ports"] if p["name"] == "http"
            )
            text = client.get(f"http://{pod['status']['podIP']}:{port}/metrics").text
            for family in text_string_to_metric_families(text):
                total += sum(s.value for s in family.samples if s.name == FEEDBACK_TOTAL)
    return int(total)


def prometheus_counted(prometheus_url: str, model: str, version: str) -> int | None:
    """The same count as Prometheus last scraped it (one series per pod, as the operator reads)."""
    query = (
        f'sum(max by (namespace, pod, instance) ({FEEDBACK_TOTAL}{{namespace="{MODELS_NAMESPACE}", '
        f'model="{model}", version="{version}"}}))'
    )
    result = _query(prometheus_url, query)
    return int(float(result[0]["value"][1])) if result else None


def feedback_series(prometheus_url: str, model: str, version: str) -> list[dict[str, str]]:
    """The feedback series of `version` Prometheus holds now: their job, namespace and pod labels
    (counted once: one series per pod, whichever paths could scrape it)."""
    query = f'{FEEDBACK_TOTAL}{{model="{model}", version="{version}"}}'
    keep = ("job", "namespace", "pod")
    return sorted(({k: r["metric"].get(k, "") for k in keep} for r in _query(prometheus_url, query)), key=str)


def targets(prometheus_url: str) -> list[dict[str, Any]]:
    """Prometheus' active targets: scrape pool, health, namespace, pod/service."""
    data = httpx.get(f"{prometheus_url}/api/v1/targets", params={"state": "active"}, timeout=10).json()
    return [
        {
            "scrapePool": t["scrapePool"],
            "health": t["health"],
            "namespace": t["labels"].get("namespace"),
            "pod": t["labels"].get("pod"),
            "service": t["labels"].get("service"),
            "lastError": t.get("lastError", ""),
        }
        for t in data["data"]["activeTargets"]
    ]


def count_a_batch(
    stack: RealStack, model: str, selector: str, version: str, token: str, requests: int = 25
) -> dict[str, Any]:
    """Both counts before and after a batch of `requests` feedback posts (4 labels each)."""
    before = _settled(stack, model, selector, version)
    features, labels = iris()
    sent = 0
    with httpx.Client(timeout=5) as client:
        for i in range(requests):
            rows = [(7 * i + j) % len(labels) for j in range(4)]
            response = client.post(
                f"{stack.service_url(model)}/v2/models/{model}/feedback",
                json={
                    "instances": [features[r].tolist() for r in rows],
                    "labels": [int(labels[r]) for r in rows],
                },
                headers={"Authorization": f"Bearer {token}"},
            )
            sent += len(rows) if response.status_code == 200 else 0
    after = _settled(stack, model, selector, version)
    return {
        "labels sent": sent,
        "servers counted": after["servers"] - before["servers"],
        "check samples": after["watch samples"] - before["watch samples"],
        "before": before,
        "after": after,
    }


def _settled(stack: RealStack, model: str, selector: str, version: str) -> dict[str, Any]:
    """Once Prometheus holds what the servers counted and a check ran after that scrape."""
    counted = servers_counted(stack, selector, version)
    started = time.monotonic()
    wait_for(
        lambda: prometheus_counted(stack.prometheus_url, model, version) == counted,
        timeout=60,
        interval=1,
        what=f"Prometheus to scrape the {counted} labels the servers of {version} counted",
    )
    scraped = time.time()
    scraped_after = round(time.monotonic() - started, 1)

    def checked_since() -> dict[str, Any] | None:
        status = stack.get("mdep", model).get("status") or {}
        last = (status.get("lastCheck") or {}).get("time")
        # The check reads Prometheus `evaluationDelay` (1 s) in the past: 2 s covers it.
        return status if last and _epoch(last) > scraped + 2 else None

    status = wait_for(checked_since, timeout=60, interval=0.5, what="a check after that scrape")
    return {
        "servers": counted,
        "watch samples": round(status["watch"]["samples"]),
        "check query": status["lastCheck"]["query"],
        "scraped after (s)": scraped_after,
    }


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def _query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return list(response.json()["data"]["result"])
