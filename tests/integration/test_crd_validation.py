"""Issue 4 (g): the real kube-apiserver rejects invalid ModelDeployments, naming the field.

Every case starts from a valid object and changes one thing (a dotted path set to a value,
or removed with DELETE). It is applied with server-side dry-run, so nothing is stored:
the schema, defaults and CEL rules of crds/modeldeployment.yaml are what decide.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from harness.waiting import wait_for

pytestmark = pytest.mark.cluster

DELETE = object()  # marker: remove the key

BASE: dict[str, Any] = {
    "apiVersion": "vigil.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris"},
    "spec": {"version": "v1", "model": {"uri": "http://models.ml.svc/iris/v1/model.joblib"}},
}

ANALYSIS_DEFAULTS = {
    "metric": "accuracy",
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


@dataclass(frozen=True)
class Invalid:
    id: str
    changes: dict[str, Any]
    field: str  # the field path the error must name
    says: str  # and a piece of the message


def pod(spec: dict[str, Any]) -> dict[str, Any]:
    """The change that sets spec.podTemplate.spec."""
    return {"spec.podTemplate": {"spec": spec}}


def init(security: dict[str, Any]) -> dict[str, Any]:
    """The change that adds an init container with this security context."""
    return pod({"initContainers": [{"name": "fetch", "image": "busybox", "securityContext": security}]})


def mount(path: str) -> dict[str, Any]:
    return {"name": "data", "mountPath": path}


INIT = "spec.podTemplate.spec.initContainers[0]"
SECRET_KEY = {"name": "s3", "key": "token"}
DATA_VOLUME = {"volumes": [{"name": "data", "emptyDir": {}}]}

# fmt: off
INVALID = [
    # --- required fields and the name ---
    Invalid("no-spec", {"spec": DELETE}, "spec", "Required value"),
    Invalid("no-version", {"spec.version": DELETE}, "spec.version", "Required value"),
    Invalid("no-model", {"spec.model": DELETE}, "spec.model", "Required value"),
    Invalid("no-model-uri", {"spec.model.uri": DELETE}, "spec.model.uri", "Required value"),
    Invalid("name-not-dns-label", {"metadata.name": "iris.v2"}, "metadata.name", "DNS-1035 label"),
    Invalid("name-too-long", {"metadata.name": "m" * 64}, "metadata.name", "at most 63"),
    # --- version (a label value) ---
    Invalid("version-empty", {"spec.version": ""}, "spec.version", "at least 1 chars long"),
    Invalid("version-too-long", {"spec.version": "v" * 64}, "spec.version", "Too long"),
    Invalid("version-slash", {"spec.version": "v2/beta"}, "spec.version", "should match"),
    Invalid("version-leading-dash", {"spec.version": "-v2"}, "spec.version", "should match"),
    Invalid("version-number", {"spec.version": 2}, "spec.version", "must be of type string"),
    # --- model ---
    Invalid("uri-ftp", {"spec.model.uri": "ftp://models/iris.joblib"}, "spec.model.uri",
            "must start with file://, http://, https://, s3://, gs:// or pvc://"),
    Invalid("uri-pvc-no-path", {"spec.model.uri": "pvc://models"}, "spec.model.uri",
            "names a claim and a path in it, pvc://CLAIM/PATH"),
    Invalid("uri-pvc-bad-claim", {"spec.model.uri": "pvc://Models_1/iris.joblib"}, "spec.model.uri",
            "names a claim and a path in it"),
    Invalid("uri-s3-no-key", {"spec.model.uri": "s3://models/"}, "spec.model.uri",
            "names a bucket and an object, s3://BUCKET/KEY"),
    Invalid("uri-gs-credentials", {"spec.model.uri": "gs://key:secret@models/iris.joblib"},
            "spec.model.uri", "without credentials"),
    Invalid("uri-relative", {"spec.model.uri": "models/iris.joblib"}, "spec.model.uri",
            "or be an absolute path"),
    Invalid("uri-scheme-only", {"spec.model.uri": "https://"}, "spec.model.uri", "must start with"),
    Invalid("sha256-short", {"spec.model.sha256": "abc123"}, "spec.model.sha256", "should match"),
    Invalid("sha256-upper", {"spec.model.sha256": "A" * 64}, "spec.model.sha256", "should match"),
    Invalid("image-empty", {"spec.image": ""}, "spec.image", "at least 1 chars long"),
    Invalid("image-space", {"spec.image": "vigil server:1"}, "spec.image", "should match"),
    # --- replicas, deadline, resources ---
    Invalid("replicas-negative", {"spec.replicas": -1}, "spec.replicas", "greater than or equal to 0"),
    Invalid("replicas-too-many", {"spec.replicas": 101}, "spec.replicas", "less than or equal to 100"),
    Invalid("replicas-string", {"spec.replicas": "two"}, "spec.replicas", "must be of type integer"),
    Invalid("deadline-too-short", {"spec.progressDeadlineSeconds": 5}, "spec.progressDeadlineSeconds",
            "greater than or equal to 10"),
    Invalid("cpu-not-quantity", {"spec.resources": {"requests": {"cpu": "lots"}}},
            "spec.resources.requests.cpu", "should match"),
    Invalid("requests-above-limits",
            {"spec.resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}},
            "spec.resources.requests", "must not exceed resources.limits"),
    Invalid("pod-label-value-space", {"spec.podLabels": {"team": "fraud detection"}}, "spec.podLabels.team",
            "should match"),
    Invalid("resources-unknown", {"spec.resources": {"request": {"cpu": "1"}}},
            "spec.resources.request", "unknown field"),
    # --- analysis: numbers ---
    Invalid("threshold-above-1", {"spec.analysis.threshold": 1.5}, "spec.analysis.threshold",
            "must be between 0 and 1"),
    Invalid("threshold-negative", {"spec.analysis.threshold": -0.1}, "spec.analysis.threshold",
            "must be between 0 and 1"),
    Invalid("threshold-percent", {"spec.analysis.threshold": 90}, "spec.analysis.threshold",
            "must be between 0 and 1"),
    Invalid("threshold-string", {"spec.analysis.threshold": "high"}, "spec.analysis.threshold",
            "must be of type number"),
    Invalid("confidence-1", {"spec.analysis.confidence": 1}, "spec.analysis.confidence", "less than 1"),
    Invalid("confidence-low", {"spec.analysis.confidence": 0.4}, "spec.analysis.confidence", "at least 0.5"),
    Invalid("drop-0", {"spec.analysis.drop": 0}, "spec.analysis.drop", "above 0"),
    Invalid("drop-big", {"spec.analysis.drop": 0.6}, "spec.analysis.drop", "at most 0.5"),
    Invalid("failure-limit-0", {"spec.analysis.failureLimit": 0}, "spec.analysis.failureLimit",
            "greater than or equal to 1"),
    Invalid("failure-limit-101", {"spec.analysis.failureLimit": 101}, "spec.analysis.failureLimit",
            "less than or equal to 100"),
    Invalid("success-limit-0", {"spec.analysis.successLimit": 0}, "spec.analysis.successLimit",
            "greater than or equal to 1"),
    Invalid("error-limit-0", {"spec.analysis.errorLimit": 0}, "spec.analysis.errorLimit",
            "greater than or equal to 1"),
    Invalid("min-samples-0", {"spec.analysis.minSamples": 0}, "spec.analysis.minSamples",
            "greater than or equal to 1"),
    Invalid("after-promotion-string", {"spec.analysis.afterPromotion": "yes"}, "spec.analysis.afterPromotion",
            "must be of type boolean"),
    # --- analysis: durations ---
    Invalid("interval-words", {"spec.analysis.interval": "30 seconds"}, "spec.analysis.interval",
            "should match"),
    Invalid("interval-no-unit", {"spec.analysis.interval": "30"}, "spec.analysis.interval", "should match"),
    Invalid("interval-days", {"spec.analysis.interval": "1d"}, "spec.analysis.interval", "should match"),
    Invalid("interval-unordered", {"spec.analysis.interval": "30s1m"}, "spec.analysis.interval",
            "should match"),
    Invalid("interval-sub-second", {"spec.analysis.interval": "500ms"}, "spec.analysis.interval",
            "must be at least 1s"),
    Invalid("window-below-interval", {"spec.analysis.interval": "1m", "spec.analysis.window": "30s"},
            "spec.analysis.window", "must be at least analysis.interval (1m)"),
    Invalid("window-empty", {"spec.analysis.window": ""}, "spec.analysis.window", "at least 2 chars long"),
    Invalid("interval-empty", {"spec.analysis.interval": ""}, "spec.analysis.interval",
            "at least 2 chars long"),
    Invalid("query-timeout-empty", {"spec.analysis.queryTimeout": ""}, "spec.analysis.queryTimeout",
            "at least 2 chars long"),
    Invalid("query-timeout-zero", {"spec.analysis.queryTimeout": "0s"}, "spec.analysis.queryTimeout",
            "must be more than 0"),
    # --- analysis: strings ---
    Invalid("metric-unknown", {"spec.analysis.metric": "latency"}, "spec.analysis.metric",
            "Unsupported value"),
    Invalid("prometheus-no-scheme", {"spec.analysis.prometheusUrl": "prometheus:9090"},
            "spec.analysis.prometheusUrl", "must be an http:// or https:// URL"),
    Invalid("prometheus-ftp", {"spec.analysis.prometheusUrl": "ftp://prometheus:9090"},
            "spec.analysis.prometheusUrl", "must be an http:// or https:// URL"),
    Invalid("credentials-secret-bad-name", {"spec.analysis.credentialsSecret": "Prom_Reader"},
            "spec.analysis.credentialsSecret", "should match"),
    Invalid("query-unknown-placeholder", {"spec.analysis.query": 'up{job="{{model}}"}'},
            "spec.analysis.query", "unknown placeholder; the allowed ones are {{name}}, {{namespace}}, "
            "{{version}} and {{window}}"),
    Invalid("analysis-typo", {"spec.analysis.treshold": 0.8}, "spec.analysis.treshold", "unknown field"),
    Invalid("analysis-not-object", {"spec.analysis": "accuracy"}, "spec.analysis", "must be of type object"),
    # --- strategy ---
    Invalid(
        "strategy-type-unknown", {"spec.strategy.type": "BlueGreen"},
        "spec.strategy.type", "Unsupported value",
    ),
    Invalid(
        "canary-steps-not-increasing",
        {"spec.strategy": {"type": "Canary", "canary": {"steps": [{"percent": 50}, {"percent": 20}]}}},
        "spec.strategy.canary.steps", "raise percent",
    ),
    Invalid(
        "canary-step-100-percent",
        {"spec.strategy": {"type": "Canary", "canary": {"steps": [{"percent": 100}]}}},
        "spec.strategy.canary.steps[0].percent", "less than or equal to 99",
    ),
    Invalid(
        "canary-block-with-type-replace",
        {"spec.strategy": {"type": "Replace", "canary": {"steps": [{"percent": 10}]}}},
        "spec.strategy.canary", "needs type Canary",
    ),
    Invalid(
        "shadow-margin-above-0.2",
        {"spec.strategy": {"type": "Shadow", "shadow": {"margin": 0.5}}},
        "spec.strategy.shadow.margin", "between 0 and 0.2",
    ),
    Invalid(
        "shadow-block-with-type-canary",
        {"spec.strategy": {"type": "Canary", "shadow": {"margin": 0.01}}},
        "spec.strategy.shadow", "needs type Shadow",
    ),
    # --- podTemplate: what would collide with the operator, each named where it is ---
    Invalid("pod-template-env-reserved",
            pod({"env": [{"name": "AWS_REGION", "value": "x"}, {"name": "MODEL_URI", "value": "s3://o/m"}]}),
            "spec.podTemplate.spec.env[1].name", "env[].name MODEL_URI is set by the operator"),
    Invalid("pod-template-env-value-and-value-from",
            pod({"env": [{"name": "KEY", "value": "x", "valueFrom": {"secretKeyRef": SECRET_KEY}}]}),
            "spec.podTemplate.spec.env[0].valueFrom", "must name exactly one source"),
    Invalid("pod-template-env-from-neither", pod({"envFrom": [{"prefix": "S3_"}]}),
            "spec.podTemplate.spec.envFrom[0].secretRef", "exactly one must be set"),
    Invalid("pod-template-volume-named-like-the-operators",
            pod({"volumes": [{"name": "model-pvc", "emptyDir": {}}]}),
            "spec.podTemplate.spec.volumes[0].name", "model-pvc is the name of a volume of the operator"),
    Invalid("pod-template-volume-host-path",
            pod({"volumes": [{"name": "host", "hostPath": {"path": "/etc"}}]}),
            "spec.podTemplate.spec.volumes[0]", "hostPath and the like are not"),
    Invalid("pod-template-mount-at-the-pvc-root",
            pod(DATA_VOLUME | {"volumeMounts": [mount("/var/lib/vigil/pvc")]}),
            "spec.podTemplate.spec.volumeMounts[0].mountPath", "overlaps a mount of the operator"),
    Invalid("pod-template-mount-over-tmp-parent", pod(DATA_VOLUME | {"volumeMounts": [mount("/var/run")]}),
            "spec.podTemplate.spec.volumeMounts[0].mountPath", "nor above"),
    Invalid("pod-template-mount-the-feedback-token",
            pod({"volumeMounts": [{"name": "feedback-token", "mountPath": "/token"}]}),
            "spec.podTemplate.spec.volumeMounts[0].name", "is a volume of the operator"),
    Invalid("pod-template-mount-of-an-undeclared-volume", pod({"volumeMounts": [mount("/models")]}),
            "spec.podTemplate.spec.volumeMounts", "must name volumes declared in podTemplate.spec.volumes"),
    Invalid("pod-template-init-privileged", init({"privileged": True}),
            f"{INIT}.securityContext.privileged", "restricted Pod Security"),
    Invalid("pod-template-init-root", init({"runAsUser": 0}),
            f"{INIT}.securityContext.runAsUser", "must not be 0 (root)"),
    Invalid("pod-template-init-capability", init({"capabilities": {"add": ["SYS_ADMIN"]}}),
            f"{INIT}.securityContext.capabilities.add", "NET_BIND_SERVICE only"),
    Invalid("pod-template-init-unconfined", init({"seccompProfile": {"type": "Unconfined"}}),
            f"{INIT}.securityContext.seccompProfile.type", "Unsupported value"),
    Invalid("pod-template-init-named-model-server",
            pod({"initContainers": [{"name": "model-server", "image": "busybox"}]}),
            f"{INIT}.name", "must not be model-server"),
    Invalid("pod-template-selector-label",
            {"spec.podTemplate": {"metadata": {"labels": {"vigil.dev/model": "other"}}}},
            "spec.podTemplate.metadata.labels", "must not set the labels of the operator"),
    Invalid("pod-template-label-key-space",
            {"spec.podTemplate": {"metadata": {"labels": {"team name": "fraud"}}}},
            "spec.podTemplate.metadata.labels", "keys must be label keys"),
    Invalid("pod-template-release-annotation",
            {"spec.podTemplate": {"metadata": {"annotations": {"vigil.dev/release": "x"}}}},
            "spec.podTemplate.metadata.annotations", "must not set the annotations of the operator"),
    Invalid("pod-template-toleration-exists-with-value",
            pod({"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]}),
            "spec.podTemplate.spec.tolerations[0].value", "must be empty with operator Exists"),
    Invalid("pod-template-resources-twice",
            {"spec.resources": {"limits": {"cpu": "1"}}, **pod({"resources": {"limits": {"cpu": "1"}}})},
            "spec.podTemplate.spec.resources", "must not both be set"),
    Invalid("pod-template-sidecar", pod({"containers": [{"name": "proxy", "image": "envoy"}]}),
            "spec.podTemplate.spec.containers", "unknown field"),
]
# fmt: on


# Every podTemplate field, as docs/reference.md's examples use them.
POD_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"team": "fraud"}, "annotations": {"example.com/owner": "ml"}},
    "spec": {
        "env": [
            {"name": "AWS_REGION", "value": "eu-west-1"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "s3", "key": "token", "optional": True}},
            },
        ],
        "envFrom": [
            {"secretRef": {"name": "minio-reader"}},
            {"configMapRef": {"name": "s3"}, "prefix": "S3_"},
        ],
        "volumes": [
            {"name": "models", "emptyDir": {"sizeLimit": "2Gi"}},
            {"name": "claim", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}},
            {
                "name": "token",
                "projected": {"sources": [{"serviceAccountToken": {"audience": "s3", "path": "t"}}]},
            },
        ],
        "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
        "resources": {"requests": {"cpu": "2"}, "limits": {"memory": "8Gi", "nvidia.com/gpu": 1}},
        "initContainers": [
            {
                "name": "fetch",
                "image": "registry.example.com/tools/fetch:1.0",
                "imagePullPolicy": "IfNotPresent",
                "command": ["fetch"],
                "args": ["https://models.example.com/iris.joblib", "/models/model.joblib"],
                "workingDir": "/models",
                "env": [{"name": "MODEL_URI", "value": "allowed in an init container"}],
                "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                "resources": {"limits": {"memory": "256Mi"}},
                "securityContext": {
                    "runAsUser": 65532,
                    "runAsGroup": 65532,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
            }
        ],
        "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
        "tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {
                "key": "spot",
                "operator": "Equal",
                "value": "true",
                "effect": "NoExecute",
                "tolerationSeconds": 60,
            },
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]}
                    ]
                }
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"vigil.dev/model": "iris"}},
                        },
                    }
                ]
            },
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
        "serviceAccountName": "iris-model-reader",
        "automountServiceAccountToken": False,
        "imagePullSecrets": [{"name": "registry-credentials"}],
        "priorityClassName": "model-serving",
    },
}


@dataclass(frozen=True)
class Valid:
    id: str
    changes: dict[str, Any] = field(default_factory=dict)


VALID = [
    Valid("threshold-0-and-confidence-0.5", {"spec.analysis.threshold": 0, "spec.analysis.confidence": 0.5}),
    Valid("threshold-1-integer", {"spec.analysis.threshold": 1}),
    Valid(
        "uri-absolute-path-and-sha256",
        {"spec.model.uri": "/models/iris.joblib", "spec.model.sha256": "a" * 64},
    ),
    Valid("uri-s3", {"spec.model.uri": "s3://models/iris/v2/model.joblib"}),
    Valid("uri-gs", {"spec.model.uri": "gs://my-models.example/iris/v2/model.skops"}),
    Valid("uri-pvc-file", {"spec.model.uri": "pvc://models/iris/v2/model.joblib"}),
    Valid("uri-pvc-folder", {"spec.model.uri": "pvc://model-store.v1/iris/v2"}),
    Valid("uri-file", {"spec.model.uri": "file:///models/iris.joblib"}),
    Valid("version-63-chars-and-name-63-chars", {"spec.version": "v" * 63, "metadata.name": "m" * 63}),
    Valid("version-with-dots", {"spec.version": "2024.06.01-rc_1"}),
    Valid("replicas-0", {"spec.replicas": 0}),
    Valid("durations-1s", {"spec.analysis.interval": "1s", "spec.analysis.window": "1s"}),
    Valid(
        "durations-compound",
        {
            "spec.analysis.interval": "1m30s",
            "spec.analysis.window": "1h30m",
            "spec.analysis.queryTimeout": "2500ms",
        },
    ),
    Valid(
        "custom-query",
        {
            "spec.analysis.query": (
                'sum(rate(ok_total{namespace="{{namespace}}",model="{{name}}",version="{{version}}"}[{{window}}]))'
                ' / sum(rate(all_total{namespace="{{namespace}}",model="{{name}}"}[{{window}}]))'
            )
        },
    ),
    Valid(
        "prometheus-https-and-secret",
        {
            "spec.analysis.prometheusUrl": "https://prom.example.com:9443/api/prom",
            "spec.analysis.credentialsSecret": "prom-reader",
        },
    ),
    Valid(
        "resources",
        {
            "spec.resources": {
                "requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"cpu": 1, "memory": "512Mi", "nvidia.com/gpu": 1},
            }
        },
    ),
    Valid(
        "pod-labels-and-annotations",
        {
            "spec.podLabels": {"team": "fraud", "app.kubernetes.io/part-of": "risk"},
            "spec.podAnnotations": {"kwok.x-k8s.io/status": "custom"},
        },
    ),
    Valid("image", {"spec.image": "registry.example.com/vigil-model-server:0.1.0@sha256:" + "b" * 64}),
    Valid("pod-template-every-field", {"spec.podTemplate": POD_TEMPLATE}),
    Valid(
        "canary-two-steps",
        {"spec.strategy": {"type": "Canary", "canary": {"steps": [{"percent": 10}, {"percent": 50}]}}},
    ),
    Valid(
        "shadow-then-canary",
        {
            "spec.strategy": {
                "type": "Shadow",
                "shadow": {"margin": 0, "next": "Canary"},
                "canary": {"steps": [{"percent": 25}]},
            }
        },
    ),
]


def build(changes: dict[str, Any]) -> dict[str, Any]:
    """BASE with each dotted path set to its value (DELETE removes it)."""
    obj = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = obj
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)
    return obj


@pytest.fixture(scope="module")
def dry_run_namespace(cluster) -> Iterator[str]:
    """One namespace for all dry-run cases (nothing is stored in it)."""
    cluster.apply_crds()
    name = f"crd-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def dry_run(cluster, namespace: str, obj: dict[str, Any]):
    return cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
        input=yaml.safe_dump(obj, sort_keys=False), check=False,
    )  # fmt: skip


def names_field(text: str, path: str) -> bool:
    """The error names exactly this field (not merely a longer path starting with it)."""
    return re.search(re.escape(path) + r'(?=[:"\s])', text) is not None


def test_there_are_at_least_20_invalid_cases() -> None:
    assert len(INVALID) >= 20
    assert len({case.id for case in INVALID}) == len(INVALID)


@pytest.mark.parametrize("case", INVALID, ids=lambda case: case.id)
def test_invalid_object_is_rejected_naming_the_field(cluster, dry_run_namespace: str, case: Invalid) -> None:
    result = dry_run(cluster, dry_run_namespace, build(case.changes))
    assert result.returncode != 0, f"accepted:\n{result.stdout}"
    error = result.stderr
    assert names_field(error, case.field), f"the error does not name {case.field}:\n{error}"
    assert case.says in error, error
    # A CEL rule that errors instead of evaluating to false is a bug in the CRD.
    assert "evaluating rule" not in error, error
    assert "call arguments did not match" not in error, error


def test_minimal_object_gets_every_default(cluster, dry_run_namespace: str) -> None:
    result = dry_run(cluster, dry_run_namespace, BASE)
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)["spec"]
    assert spec == {
        **BASE["spec"],  # no replicas: unset, the operator never writes them (an HPA may)
        "model": {**BASE["spec"]["model"], "allowUnpinnedPickle": False},
        "progressDeadlineSeconds": 600,
        "analysis": ANALYSIS_DEFAULTS,
        "strategy": {"type": "Replace"},
    }


def test_partial_analysis_keeps_the_other_defaults(cluster, dry_run_namespace: str) -> None:
    result = dry_run(
        cluster, dry_run_namespace, build({"spec.analysis": {"threshold": 0.8, "interval": "1m"}})
    )
    assert result.returncode == 0, result.stderr
    analysis = json.loads(result.stdout)["spec"]["analysis"]
    assert analysis == {**ANALYSIS_DEFAULTS, "threshold": 0.8, "interval": "1m"}


def is_subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and is_subset(v, actual[k]) for k, v in expected.items()
        )
    return expected == actual


@pytest.mark.parametrize("case", VALID, ids=lambda case: case.id)
def test_valid_object_is_accepted_unchanged(cluster, dry_run_namespace: str, case: Valid) -> None:
    obj = build(case.changes)
    result = dry_run(cluster, dry_run_namespace, obj)
    assert result.returncode == 0, result.stderr
    # Nothing the user wrote was pruned or rewritten.
    assert is_subset(obj["spec"], json.loads(result.stdout)["spec"])


def test_the_sample_is_valid(cluster, dry_run_namespace: str) -> None:
    from harness.cluster import REPO_ROOT

    sample = yaml.safe_load((REPO_ROOT / "manifests" / "samples" / "modeldeployment.yaml").read_text())
    sample["metadata"].pop("namespace")
    result = dry_run(cluster, dry_run_namespace, sample)
    assert result.returncode == 0, result.stderr
    assert is_subset(sample["spec"], json.loads(result.stdout)["spec"])


# What the operator writes: every status field, timestamps as Python's isoformat() and as "Z".
FULL_STATUS = {
    "observedGeneration": 1,
    "phase": "Promoted",
    "currentVersion": "v1",
    "stableVersion": "v1",
    "failedVersion": "v0",
    "rollbackReason": "AnalysisFailed",
    "degradedReason": "MetricsUnavailable",
    "currentRelease": {"version": "v1", "uri": "http://m/v1.joblib", "sha256": "a" * 64, "image": "img:1"},
    "stableRelease": {"version": "v1", "uri": "http://m/v1.joblib", "image": "img:1"},
    "servingSince": "2026-01-02T03:04:05.123456+00:00",
    "rolloutStartedAt": "2026-01-02T03:04:00.000Z",
    "lastCheck": {
        "time": "2026-01-02T03:05:05+00:00",
        "value": 0.9375,
        "samples": 160.0,
        "lower": 0.89,
        "upper": 0.96,
        "verdict": "pass",
        "query": "sum(x)",
        "reason": "lower bound 0.89 >= threshold 0.85",
        "error": "",
    },
    "streaks": {"failures": 0, "passes": 3, "errors": 0},
    "history": [
        {"version": "v0", "uri": "http://m/v0.joblib", "image": "img:1", "outcome": "RolledBack",
         "at": "2026-01-01T00:00:00Z", "reason": "3 checks failed"},
    ],
    "lastAction": "Promoted",
    "message": "v1 promoted after 3 passing checks",
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "Promoted", "message": "v1 is stable",
         "lastTransitionTime": "2026-01-02T03:05:05Z", "observedGeneration": 1},
        {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "",
         "lastTransitionTime": "2026-01-02T03:05:05Z"},
    ],
}  # fmt: skip


def patch_status(cluster, namespace: str, status: dict[str, Any], check: bool = True):
    return cluster.kubectl(
        "patch", "-n", namespace, "modeldeployment", "iris", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}), check=check,
    )  # fmt: skip


STAGED = {
    "type": "Shadow",
    "stage": "Canary",
    "step": 2,
    "steps": 3,
    "candidatePercent": 25,
    "candidateReplicas": 1,
    "stages": [{"type": "Shadow", "percent": 0}, {"type": "Canary", "percent": 25}],
}


def test_status_subresource_columns_and_status_schema(cluster, namespace: str) -> None:
    cluster.apply_crds()
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(BASE))

    # The whole status the operator writes is kept as it is (nothing pruned).
    patch_status(cluster, namespace, FULL_STATUS)
    stored = json.loads(cluster.kubectl("get", "-n", namespace, "mdep", "iris", "-o", "json").stdout)
    assert stored["status"] == FULL_STATUS
    assert stored["spec"]["version"] == "v1"

    # Short name, category and printer columns (CURRENT only with -o wide).
    table = cluster.kubectl("get", "-n", namespace, "vigil", "-o", "wide").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "VERSION",
        "CURRENT",
        "STABLE",
        "PHASE",
        "STAGE",
        "SHARE",
        "ACCURACY",
        "AGE",
    ]
    assert table[1].split()[:6] == ["iris", "v1", "v1", "v1", "Promoted", "0.9375"]  # no stage, no share
    header = cluster.kubectl("get", "-n", namespace, "mdep").stdout.splitlines()[0]
    assert header.split() == ["NAME", "VERSION", "STABLE", "PHASE", "STAGE", "SHARE", "ACCURACY", "AGE"]

    # A staged rollout's status.strategy is kept whole, and its stage and share are columns.
    patch_status(cluster, namespace, {"strategy": STAGED})
    stored = json.loads(cluster.kubectl("get", "-n", namespace, "mdep", "iris", "-o", "json").stdout)
    assert stored["status"]["strategy"] == STAGED
    row = cluster.kubectl("get", "-n", namespace, "mdep").stdout.splitlines()[1].split()
    assert row[3:6] == ["Promoted", "Canary", "25"]

    # kstatus-style conditions work with kubectl wait.
    cluster.kubectl("wait", "-n", namespace, "mdep/iris", "--for=condition=Ready", "--timeout=10s")

    # The status is typed: operator bugs are rejected, naming the field.
    bad_statuses = [
        ({"phase": "Bogus"}, "status.phase"),
        ({"lastCheck": {"verdict": "maybe"}}, "status.lastCheck.verdict"),
        ({"lastCheck": {"time": "yesterday"}}, "status.lastCheck.time"),
        ({"history": [FULL_STATUS["history"][0]] * 21}, "status.history"),
        ({"conditions": [{**FULL_STATUS["conditions"][0], "status": "Yes"}]}, "status.conditions[0].status"),
        ({"conditions": [{"type": "Ready", "status": "True"}]}, "status.conditions[0].reason"),
        ({"streaks": {"failures": "one"}}, "status.streaks.failures"),
        ({"strategy": {**STAGED, "stage": "Bogus"}}, "status.strategy.stage"),
    ]
    for status, path in bad_statuses:
        result = patch_status(cluster, namespace, status, check=False)
        assert result.returncode != 0, f"status {status} was accepted"
        assert names_field(result.stderr, path), f"{path} not named:\n{result.stderr}"


def test_kubectl_explain_describes_the_fields(cluster) -> None:
    cluster.apply_crds()

    def explained() -> str | bool:
        result = cluster.kubectl("explain", "modeldeployments.spec.analysis.threshold", check=False)
        return result.returncode == 0 and result.stdout

    text = wait_for(explained, timeout=60, interval=1, what="the CRD's OpenAPI to be published")
    assert "below which a version fails" in " ".join(text.split())
    fields = cluster.kubectl("explain", "mdep.spec.analysis").stdout
    for name in ANALYSIS_DEFAULTS:
        assert name in fields
