"""The Helm chart, rendered by the real `helm` (bin/helm) without a cluster.

What the chart promises: the CRD identical to crds/, least-privilege RBAC without wildcards,
a restricted security context, the operator's real command-line flags, the peering and
monitoring switches, and a schema that rejects unknown values. Cluster behaviour (install,
upgrade, uninstall, server-side dry-run) is in tests/integration/test_helm.py.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigil_operator.main import parse_args

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "vigil"
HELM = REPO_ROOT / "bin" / "helm"
CRD_SOURCE = REPO_ROOT / "crds" / "modeldeployment.yaml"
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"

pytestmark = pytest.mark.skipif(not HELM.exists(), reason="bin/helm missing: run `make cluster-tools`")


def helm(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *args], env=env, text=True, capture_output=True, check=check)


def render(env: dict[str, str], *sets: str, namespace: str = "vigil-system") -> list[dict[str, Any]]:
    args = ["template", "vigil", str(CHART), "--namespace", namespace]
    for value in sets:
        args += ["--set", value]
    return [doc for doc in yaml.safe_load_all(helm(env, *args).stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def rules(objects: list[dict[str, Any]]) -> Iterator[tuple[str, str, str, str]]:
    """(role, apiGroup, resource, verb) for every rule of every ClusterRole/Role."""
    for role in by_kind(objects, "ClusterRole") + by_kind(objects, "Role"):
        for rule in role.get("rules") or []:
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        yield role["metadata"]["name"], group, resource, verb


def test_helm_lint_passes_for_default_and_every_switch(helm_env: dict[str, str]) -> None:
    switches = [
        "replicaCount=2",
        "watchNamespaces={ml,ml-staging}",
        "modelServers.podMonitor.enabled=true",
        "metrics.serviceMonitor.enabled=true",
        "metrics.podMonitor.enabled=true",
        "podDisruptionBudget.enabled=true",
        "crds.install=false",
        "alerts.enabled=true",
        "dashboards.enabled=true",
        "monitoring.labels.release=kps",
    ]
    helm(helm_env, "lint", "--strict", str(CHART))
    result = helm(helm_env, "lint", "--strict", str(CHART), *[a for s in switches for a in ("--set", s)])
    assert "0 chart(s) failed" in result.stdout


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == ("0.1.0", "0.1.0")


def test_chart_crd_file_is_identical_to_the_single_source() -> None:
    copy = CHART / "files" / "modeldeployment.yaml"
    assert copy.read_bytes() == CRD_SOURCE.read_bytes(), "run `make sync-crds`"


def test_rendered_crd_is_the_source_plus_the_keep_policy(helm_env: dict[str, str]) -> None:
    crd = one(render(helm_env), "CustomResourceDefinition")
    annotations = crd["metadata"].pop("annotations")
    assert annotations == {"helm.sh/resource-policy": "keep"}
    assert crd == yaml.safe_load(CRD_SOURCE.read_text())


def test_crds_install_false_leaves_the_crd_out(helm_env: dict[str, str]) -> None:
    assert not by_kind(render(helm_env, "crds.install=false"), "CustomResourceDefinition")


def test_default_render_objects(helm_env: dict[str, str]) -> None:
    objects = render(helm_env)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == [
        ("ClusterRole", "vigil-operator"),
        ("ClusterRole", "vigil-operator-cluster"),
        ("ClusterRoleBinding", "vigil-operator"),
        ("ClusterRoleBinding", "vigil-operator-cluster"),
        ("CustomResourceDefinition", "modeldeployments.vigil.dev"),
        ("Deployment", "vigil-operator"),
        ("ServiceAccount", "vigil-operator"),
    ]
    for obj in objects:
        if obj["kind"] in ("Deployment", "ServiceAccount"):
            assert obj["metadata"]["namespace"] == "vigil-system"


def test_rbac_has_no_wildcards_and_only_the_documented_rules(helm_env: dict[str, str]) -> None:
    every_switch = [
        "replicaCount=2",
        "modelServers.podMonitor.enabled=true",
        "metrics.serviceMonitor.enabled=true",
    ]
    granted: set[tuple[str, str, str]] = set()
    for extra in ([], ["watchNamespaces={ml}"]):
        objects = render(helm_env, *every_switch, *extra)
        for _, group, resource, verb in rules(objects):
            assert "*" not in (group, resource, verb)
            granted.add((group or "core", resource, verb))
    section = OPERATIONS_DOC.read_text().split("## RBAC", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"[a-z0-9.]+", cells[0]):
            documented |= {(cells[0], cells[1], verb.strip()) for verb in cells[2].split(",")}
    assert granted == documented, "docs/operations.md's RBAC table must list exactly what the chart grants"


def test_cluster_wide_by_default(helm_env: dict[str, str]) -> None:
    objects = render(helm_env)
    bindings = {b["roleRef"]["name"] for b in by_kind(objects, "ClusterRoleBinding")}
    assert bindings == {"vigil-operator", "vigil-operator-cluster"}
    assert not by_kind(objects, "RoleBinding")
    assert "--all-namespaces" in container(objects)["args"]
    assert ("vigil-operator-cluster", "", "namespaces", "list") not in set(rules(objects))


def test_watch_namespaces_makes_the_operator_role_a_role_in_each_watched_namespace(
    helm_env: dict[str, str],
) -> None:
    objects = render(helm_env, "watchNamespaces={ml,ml-staging}")
    roles = by_kind(objects, "Role")
    assert sorted((r["metadata"]["namespace"], r["metadata"]["name"]) for r in roles) == [
        ("ml", "vigil-operator"),
        ("ml-staging", "vigil-operator"),
    ]
    role_bindings = by_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in role_bindings) == ["ml", "ml-staging"]
    assert {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in role_bindings} == {
        ("Role", "vigil-operator")
    }
    # Nothing on namespaced objects is cluster-wide: no ClusterRole with them, Secrets included.
    assert [r["metadata"]["name"] for r in by_kind(objects, "ClusterRole")] == ["vigil-operator-cluster"]
    assert {b["roleRef"]["name"] for b in by_kind(objects, "ClusterRoleBinding")} == {
        "vigil-operator-cluster"
    }
    cluster_wide = {resource for role, _, resource, _ in rules(objects) if role == "vigil-operator-cluster"}
    assert "secrets" not in cluster_wide
    assert all(
        {"secrets", "deployments"} <= {res for rule in r["rules"] for res in rule["resources"]} for r in roles
    )
    args = parse_args(container(objects)["args"])
    assert args.namespace == ["ml", "ml-staging"]
    assert not args.all_namespaces
    # Kopf lists namespaces in namespaced mode (to follow watched namespaces coming and going).
    assert {("vigil-operator-cluster", "", "namespaces", v) for v in ("list", "watch")} <= set(rules(objects))


def test_the_roles_rules_are_the_same_cluster_wide_and_per_namespace(helm_env: dict[str, str]) -> None:
    def operator_rules(objects: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return {(g, r, v) for role, g, r, v in rules(objects) if role == "vigil-operator"}

    assert operator_rules(render(helm_env)) == operator_rules(render(helm_env, "watchNamespaces={ml}"))


def test_operator_args_are_the_real_command_line(helm_env: dict[str, str]) -> None:
    objects = render(
        helm_env,
        "defaultImage=registry.example/server:1.2",
        "prometheusUrl=http://prom.example:9090",
        "metrics.port=9100",
        "liveness.port=9101",
        "verbose=true",
    )
    args = parse_args(container(objects)["args"])
    assert args.default_image == "registry.example/server:1.2"
    assert args.prometheus_url == "http://prom.example:9090"
    assert (args.metrics_port, args.liveness_port) == (9100, 9101)
    assert args.all_namespaces
    assert args.verbose
    assert args.peering is None
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert ports == {"metrics": 9100, "healthz": 9101}


def test_liveness_probe_and_resources(helm_env: dict[str, str]) -> None:
    operator = container(render(helm_env))
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert operator["resources"]["requests"]["memory"]
    assert operator["resources"]["limits"]["memory"]


def test_restricted_security_context(helm_env: dict[str, str]) -> None:
    deployment = one(render(helm_env), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    context = pod["containers"][0]["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    # A read-only root filesystem needs somewhere writable for temporary files.
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]


def test_single_replica_never_runs_twice(helm_env: dict[str, str]) -> None:
    deployment = one(render(helm_env), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not [o for o in render(helm_env) if o["apiVersion"].startswith("kopf.dev/")]


def test_replicas_turn_cluster_wide_peering_on(helm_env: dict[str, str]) -> None:
    objects = render(helm_env, "replicaCount=2")
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert parse_args(container(objects)["args"]).peering == "vigil"
    assert one(objects, "ClusterKopfPeering")["metadata"]["name"] == "vigil"
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    granted = set(rules(objects))
    for verb in ("get", "list", "watch", "patch"):
        assert ("vigil-operator-cluster", "kopf.dev", "clusterkopfpeerings", verb) in granted


def test_namespaced_peering_has_one_peering_object_per_namespace(helm_env: dict[str, str]) -> None:
    objects = render(helm_env, "replicaCount=3", "watchNamespaces={ml,ml-staging}", "peering.name=vigil-ha")
    peerings = by_kind(objects, "KopfPeering")
    assert sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings) == [
        ("ml", "vigil-ha"),
        ("ml-staging", "vigil-ha"),
    ]
    assert not by_kind(objects, "ClusterKopfPeering")
    assert ("vigil-operator", "kopf.dev", "kopfpeerings", "patch") in set(rules(objects))
    assert parse_args(container(objects)["args"]).peering == "vigil-ha"


def test_peering_crds_ship_in_the_crds_folder() -> None:
    kinds = {
        d["spec"]["names"]["kind"]
        for d in yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text())
    }
    assert kinds == {"ClusterKopfPeering", "KopfPeering"}


def test_model_server_pod_monitor_sets_the_namespace_label(helm_env: dict[str, str]) -> None:
    objects = render(helm_env, "modelServers.podMonitor.enabled=true")
    monitor = one(objects, "PodMonitor", "vigil-model-servers")
    assert monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "vigil"}}
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    assert {"sourceLabels": ["__meta_kubernetes_namespace"], "targetLabel": "namespace"} in endpoint[
        "relabelings"
    ]
    # The built-in query counts each pod once by namespace, pod and instance.
    assert {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"} in endpoint["relabelings"]
    scoped = one(
        render(helm_env, "modelServers.podMonitor.enabled=true", "watchNamespaces={ml}"), "PodMonitor"
    )
    assert scoped["spec"]["namespaceSelector"] == {"matchNames": ["ml"]}


def test_model_servers_get_scrape_annotations_only_when_the_value_asks(helm_env: dict[str, str]) -> None:
    assert not parse_args(container(render(helm_env))["args"]).scrape_annotations
    asked = render(helm_env, "modelServers.scrapeAnnotations=true")
    assert parse_args(container(asked)["args"]).scrape_annotations


def test_model_server_pod_monitor_matches_what_the_operator_builds() -> None:
    from vigil_operator import constants as c

    assert (c.LABEL_MANAGED_BY, c.MANAGED_BY, c.SERVER_PORT_NAME) == (
        "app.kubernetes.io/managed-by",
        "vigil",
        "http",
    )


def test_operator_service_monitor_and_pod_monitor(helm_env: dict[str, str]) -> None:
    objects = render(helm_env, "metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true")
    service = one(objects, "Service", "vigil-operator-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert one(objects, "PodMonitor", "vigil-operator")["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert not by_kind(
        render(helm_env, "metrics.port=0", "metrics.serviceMonitor.enabled=true"), "ServiceMonitor"
    )


def test_pod_disruption_budget(helm_env: dict[str, str]) -> None:
    assert not by_kind(render(helm_env), "PodDisruptionBudget")
    pdb = one(render(helm_env, "podDisruptionBudget.enabled=true", "replicaCount=2"), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"


def test_existing_service_account(helm_env: dict[str, str]) -> None:
    objects = render(helm_env, "serviceAccount.create=false", "serviceAccount.name=ops-vigil")
    assert not by_kind(objects, "ServiceAccount")
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-vigil"
    assert {s["name"] for b in by_kind(objects, "ClusterRoleBinding") for s in b["subjects"]} == {"ops-vigil"}
    failed = helm(
        helm_env, "template", "vigil", str(CHART), "--set", "serviceAccount.create=false", check=False
    )
    assert failed.returncode != 0
    assert "serviceAccount.name is required" in failed.stderr


def test_rbac_create_false_creates_no_roles(helm_env: dict[str, str]) -> None:
    assert not [o for o in render(helm_env, "rbac.create=false") if "Role" in o["kind"]]
    assert not [
        o for o in render(helm_env, "rbac.create=false", "watchNamespaces={ml}") if "Role" in o["kind"]
    ]


@pytest.mark.parametrize("extra", [[], ["watchNamespaces={ml}"]], ids=["cluster-wide", "namespaced"])
def test_secrets_are_read_and_written_by_name_only(helm_env: dict[str, str], extra: list[str]) -> None:
    """get/create/patch for the feedback token Secret (server-side apply) and the Prometheus
    credentials; never list or watch (no reading every Secret), never delete or update."""
    verbs = {verb for _, _, resource, verb in rules(render(helm_env, *extra)) if resource == "secrets"}
    assert verbs == {"get", "create", "patch"}


def test_prometheus_limits_are_passed_to_the_operator(helm_env: dict[str, str]) -> None:
    defaults = parse_args(container(render(helm_env))["args"])
    assert defaults.prometheus_allowed_url == []
    assert defaults.prometheus_max_response_bytes == 1048576
    assert defaults.prometheus_credentials_over_http is False
    objects = render(
        helm_env,
        "prometheus.allowedUrls={http://prometheus.monitoring:9090,https://thanos.example/tenant}",
        "prometheus.maxResponseBytes=4194304",
        "prometheus.credentialsOverHttp=true",
    )
    args = parse_args(container(objects)["args"])
    assert args.prometheus_allowed_url == [
        "http://prometheus.monitoring:9090",
        "https://thanos.example/tenant",
    ]
    assert args.prometheus_max_response_bytes == 4194304
    assert args.prometheus_credentials_over_http is True


def test_batched_analysis_settings_are_passed_to_the_operator(helm_env: dict[str, str]) -> None:
    defaults = parse_args(container(render(helm_env))["args"])
    assert (defaults.batch_window_seconds, defaults.prometheus_concurrency) == (1.0, 16)
    objects = render(helm_env, "prometheus.batchWindowSeconds=0", "prometheus.concurrency=4")
    args = parse_args(container(objects)["args"])
    assert (args.batch_window_seconds, args.prometheus_concurrency) == (0.0, 4)


def test_model_server_default_resources_are_passed_to_the_operator(helm_env: dict[str, str]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    args = parse_args(container(render(helm_env))["args"])
    assert args.model_server_resources == values["modelServers"]["defaultResources"]
    assert args.model_server_resources["limits"] == {"memory": "1Gi"}
    custom = render(helm_env, "modelServers.defaultResources.limits.memory=2Gi")
    assert parse_args(container(custom)["args"]).model_server_resources["limits"] == {"memory": "2Gi"}
    none = render(helm_env, "modelServers.defaultResources=null")
    assert parse_args(container(none)["args"]).model_server_resources == {}


def test_image_tag_defaults_to_app_version_and_digest_wins(helm_env: dict[str, str]) -> None:
    assert container(render(helm_env))["image"] == "ghcr.io/vigil-dev/vigil-operator:0.1.0"
    digest = "sha256:" + "a" * 64
    assert container(render(helm_env, f"image.digest={digest}"))["image"].endswith("@" + digest)


@pytest.mark.parametrize(
    "bad",
    [
        "unknownKey=1",
        "replicaCount=-1",
        "image.pullPolicy=Sometimes",
        "prometheusUrl=prometheus:9090",
        "watchNamespaces={Not_A_Namespace}",
        "liveness.port=0",
        "metrics.serviceMonitor.interval=soon",
        "rbac.readSecrets=false",  # gone: the feedback token Secret needs get/create/patch anyway
        "prometheus.maxResponseBytes=10",
        "prometheus.allowedUrls={prometheus:9090}",
        "alerts.operatorDown.for=five minutes",
        "alerts.nearThreshold.margin=-0.1",
        "alerts.unknownAlert.for=5m",
        "dashboards.label=not a label",
    ],
)
def test_schema_rejects_bad_values(helm_env: dict[str, str], bad: str) -> None:
    result = helm(helm_env, "template", "vigil", str(CHART), "--set", bad, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


def _value_paths(values: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(values, dict):
        for key, value in values.items():
            yield f"{prefix}{key}"
            yield from _value_paths(value, f"{prefix}{key}.")


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, sub in (schema.get("properties") or {}).items():
        yield f"{prefix}{key}"
        yield from _schema_paths(sub, f"{prefix}{key}.")


FREE_FORM = (
    "podSecurityContext.",
    "securityContext.",
    "resources.requests.",
    "resources.limits.",
    "modelServers.defaultResources.requests.",
    "modelServers.defaultResources.limits.",
)


def test_schema_covers_every_value_with_a_description() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    described = set(_schema_paths(schema))
    missing = [p for p in _value_paths(values) if p not in described and not p.startswith(FREE_FORM)]
    assert not missing, f"values without a schema entry: {missing}"

    def undocumented(node: dict[str, Any], path: str = "") -> Iterator[str]:
        for key, sub in (node.get("properties") or {}).items():
            if "description" not in sub:
                yield f"{path}{key}"
            yield from undocumented(sub, f"{path}{key}.")

    assert not list(undocumented(schema))
