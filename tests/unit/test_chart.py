"""The Helm chart, rendered by the real `helm` (bin/helm) without a cluster.

What the chart promises: the CRD identical to crds/, least-privilege RBAC without wildcards,
a restricted security context, the operator's real command-line flags, leader election, the
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

from vigil_operator.leader import Timing
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
    """One version for the chart and what it runs (hack/versions.py writes both)."""
    import vigil_operator

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == vigil_operator.__version__


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
        ("Role", "vigil-operator-leader-election"),
        ("RoleBinding", "vigil-operator-leader-election"),
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
    assert [b["roleRef"]["name"] for b in by_kind(objects, "RoleBinding")] == [
        "vigil-operator-leader-election"
    ]
    assert "--all-namespaces" in container(objects)["args"]
    assert ("vigil-operator-cluster", "", "namespaces", "list") not in set(rules(objects))


def test_watch_namespaces_makes_the_operator_role_a_role_in_each_watched_namespace(
    helm_env: dict[str, str],
) -> None:
    objects = render(helm_env, "watchNamespaces={ml,ml-staging}")
    roles = [r for r in by_kind(objects, "Role") if r["metadata"]["name"] == "vigil-operator"]
    assert sorted((r["metadata"]["namespace"], r["metadata"]["name"]) for r in roles) == [
        ("ml", "vigil-operator"),
        ("ml-staging", "vigil-operator"),
    ]
    role_bindings = [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] == "vigil-operator"]
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
    assert args.leader_elect
    assert (args.leader_elect_resource_namespace, args.leader_elect_resource_name) == (
        "vigil-system",
        "vigil-operator",
    )
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


def test_every_replica_is_a_leader_election_candidate_and_the_new_pod_starts_first(
    helm_env: dict[str, str],
) -> None:
    for objects in (render(helm_env), render(helm_env, "replicaCount=2")):
        deployment = one(objects, "Deployment")
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }
        pod = deployment["spec"]["template"]["spec"]
        # Long enough for a leader to finish its rounds in flight (10 s) and release the Lease.
        assert pod["terminationGracePeriodSeconds"] >= 15
        env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container(objects)["env"]}
        assert env == {"POD_NAME": "metadata.name", "POD_UID": "metadata.uid"}
        args = parse_args(container(objects)["args"])
        assert args.leader_elect
        assert args.leader_elect_timing == Timing(12, 8, 2), (
            "the chart fails over within 15 s (docs/operations.md)"
        )
        assert not [o for o in objects if o["apiVersion"].startswith("kopf.dev/")]
    assert one(render(helm_env, "replicaCount=2"), "Deployment")["spec"]["replicas"] == 2
    tuned = render(
        helm_env,
        "leaderElection.leaseDurationSeconds=12",
        "leaderElection.renewDeadlineSeconds=8",
        "leaderElection.retryPeriodSeconds=1",
    )
    assert parse_args(container(tuned)["args"]).leader_elect_timing == Timing(12, 8, 1)


@pytest.mark.parametrize("extra", [[], ["watchNamespaces={ml}"]], ids=["cluster-wide", "namespaced"])
def test_the_lease_is_the_only_thing_granted_in_the_release_namespace(
    helm_env: dict[str, str], extra: list[str]
) -> None:
    objects = render(helm_env, *extra, namespace="ops")
    role = one(objects, "Role", "vigil-operator-leader-election")
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["vigil-operator"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    binding = one(objects, "RoleBinding", "vigil-operator-leader-election")
    assert binding["metadata"]["namespace"] == "ops"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "vigil-operator", "namespace": "ops"}]
    leases = [rule for rule in rules(objects) if rule[2] == "leases"]
    assert {role for role, *_ in leases} == {"vigil-operator-leader-election"}


def test_an_unsafe_leader_election_timing_fails_at_start(helm_env: dict[str, str]) -> None:
    objects = render(helm_env, "leaderElection.renewDeadlineSeconds=20")
    with pytest.raises(SystemExit):
        parse_args(container(objects)["args"])


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
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container(render(helm_env))["image"] == f"ghcr.io/vigil-dev/vigil-operator:{version}"
    digest = "sha256:" + "a" * 64
    assert container(render(helm_env, f"image.digest={digest}"))["image"].endswith("@" + digest)


def test_both_images_come_from_the_registry_at_the_app_version(helm_env: dict[str, str]) -> None:
    """A released chart runs the released images: {image.registry}/{name}:{appVersion}."""
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    defaults = container(render(helm_env))
    assert parse_args(defaults["args"]).default_image == f"ghcr.io/vigil-dev/vigil-model-server:{version}"
    moved = container(render(helm_env, "image.registry=127.0.0.1:5000/vigil/"))
    assert moved["image"] == f"127.0.0.1:5000/vigil/vigil-operator:{version}"
    assert parse_args(moved["args"]).default_image == f"127.0.0.1:5000/vigil/vigil-model-server:{version}"
    digest = "sha256:" + "b" * 64
    own = container(
        render(
            helm_env,
            "modelServerImage.registry=mirror.example/ml",
            "modelServerImage.tag=1.2.3",
            "image.registry=",
            "image.repository=registry.example/vigil-operator",
        )
    )
    assert own["image"] == f"registry.example/vigil-operator:{version}"
    assert parse_args(own["args"]).default_image == "mirror.example/ml/vigil-model-server:1.2.3"
    pinned = container(render(helm_env, f"modelServerImage.digest={digest}"))
    assert parse_args(pinned["args"]).default_image == f"ghcr.io/vigil-dev/vigil-model-server@{digest}"
    whole = container(
        render(helm_env, "defaultImage=registry.example/server:9", f"modelServerImage.digest={digest}")
    )
    assert parse_args(whole["args"]).default_image == "registry.example/server:9"


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
        "image.repository=vigil-operator:1.0",  # the tag has a value of its own
        "modelServerImage.digest=latest",
        "modelServerImage.unknown=1",
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
