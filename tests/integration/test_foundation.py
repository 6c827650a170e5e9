"""The test stack itself: a real control plane (kwok nodes), a real Prometheus."""

from __future__ import annotations

import sys

import pytest
import yaml

from harness.cluster import REPO_ROOT, LocalCluster
from harness.ports import free_port
from harness.processes import ProcessGroup
from harness.prometheus import LocalPrometheus, ScrapeTarget
from harness.waiting import wait_for

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NAMESPACE}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: example.invalid/web:1}]
"""


@pytest.mark.cluster
def test_kube_apiserver_reports_the_pinned_version(cluster: LocalCluster) -> None:
    pinned = next(
        line.split("=", 1)[1]
        for line in (REPO_ROOT / "hack" / "cluster-tools.sh").read_text().splitlines()
        if line.startswith("K8S_VERSION=")
    )
    version = yaml.safe_load(cluster.kubectl("version", "-o", "yaml").stdout)
    assert version["serverVersion"]["gitVersion"] == pinned


@pytest.mark.cluster
def test_deployment_pods_become_ready_on_fake_nodes(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=DEPLOYMENT.replace("NAMESPACE", namespace))
    cluster.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=90s")
    pods = yaml.safe_load(
        cluster.kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "yaml").stdout
    )
    ready = [
        pod["metadata"]["name"]
        for pod in pods["items"]
        if any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
    ]
    assert len(ready) == 2
    assert all(pod["spec"]["nodeName"].startswith("kwok-node-") for pod in pods["items"])


@pytest.mark.cluster
def test_deleting_an_owner_garbage_collects_its_dependents(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = cluster.kubectl(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(dependent))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        lambda: (
            "NotFound"
            in cluster.kubectl("get", "configmap", "dependent", "-n", namespace, check=False).stderr
        ),
        timeout=60,
        what="the garbage collector to delete the dependent ConfigMap",
    )


EXPORTER = """\
import sys, time
from prometheus_client import Gauge, start_http_server
Gauge("vigil_harness_probe", "A value the test expects to read back").set(float(sys.argv[2]))
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
while True:
    time.sleep(3600)
"""


@pytest.mark.prometheus
def test_prometheus_scrapes_a_local_process(prometheus: LocalPrometheus, processes: ProcessGroup) -> None:
    port = free_port()
    processes.start("exporter", [sys.executable, "-c", EXPORTER, str(port), "42.5"])
    prometheus.set_targets([ScrapeTarget(f"127.0.0.1:{port}", {"namespace": "demo"}, job="probe")])
    value = prometheus.wait_for_value('vigil_harness_probe{namespace="demo", job="probe"}', lambda v: True)
    assert value == 42.5
