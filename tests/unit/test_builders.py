"""The Deployment and Service the operator owns (vigil_operator.builders), against reviewed golden YAML.

The golden files in `golden/` are what a user finds in their cluster. After a deliberate change to a
builder, rewrite them with `VIGIL_UPDATE_GOLDEN=1 pytest tests/unit/test_builders.py` and review the diff.
"""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from unit.scenario import V1, V2, release

from vigil_operator.builders import (
    PRE_STOP_SECONDS,
    SERVER_DRAIN_SECONDS,
    Owner,
    candidate_deployment_for,
    candidate_service_for,
    deployment_for,
    drift,
    needs_apply,
    observe,
    owner_reference,
    service_for,
    service_url,
    spec_hash,
)
from vigil_operator.config import DEFAULT_MODEL_SERVER_RESOURCES
from vigil_operator.constants import ANNOTATION_RELEASE, LABEL_MODEL, LABEL_SPEC_HASH, LABEL_VERSION
from vigil_operator.decisions import release_id
from vigil_operator.releases import AnalysisSpec, ModelDeploymentSpec, Release

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("VIGIL_UPDATE_GOLDEN") == "1"
HEADER = (
    "# Golden file: what vigil_operator.builders.{builder} makes for the ModelDeployment ml/iris in\n"
    "# tests/unit/test_builders.py. Rewrite with VIGIL_UPDATE_GOLDEN=1 and review the diff.\n"
)

OWNER = Owner(name="iris", namespace="ml", uid="3f0c6a5e-8b5f-4c39-9a55-0d4c7e3b1a2f")
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
RELEASE = release("v2", sha256=SHA256)
SPEC = ModelDeploymentSpec(
    release=RELEASE,
    analysis=AnalysisSpec(prometheus_url="http://prometheus.monitoring:9090"),
    replicas=2,
    progress_deadline_seconds=120,
    resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    pod_labels={"team": "fraud"},
    pod_annotations={"example.com/owner": "ml-platform"},
)
MINIMAL_SPEC = ModelDeploymentSpec(release=V1, analysis=SPEC.analysis)


def golden(name: str, builder: str, built: dict[str, Any]) -> None:
    """Compare `built` with golden/`name`, or rewrite the file when VIGIL_UPDATE_GOLDEN=1."""
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(HEADER.format(builder=builder) + yaml.safe_dump(built, sort_keys=False, width=100))
    assert path.exists(), f"{path} is missing; create it with VIGIL_UPDATE_GOLDEN=1"
    assert yaml.safe_load(path.read_text()) == built, (
        f"{name} differs from what {builder} makes; if the change is deliberate, "
        "rewrite it with VIGIL_UPDATE_GOLDEN=1 and review the diff"
    )


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


# --- golden files --------------------------------------------------------------------------


def test_deployment_matches_the_golden_file() -> None:
    golden("deployment.yaml", "deployment_for", deployment_for(OWNER, SPEC, RELEASE))


def test_service_matches_the_golden_file() -> None:
    golden("service.yaml", "service_for", service_for(OWNER))


# --- the Deployment --------------------------------------------------------------------------


@pytest.mark.parametrize("build", [lambda: deployment_for(OWNER, SPEC, RELEASE), lambda: service_for(OWNER)])
def test_owned_objects_have_one_controller_owner_reference(build: Any) -> None:
    obj = build()
    assert obj["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "ModelDeployment",
            "name": "iris",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert obj["metadata"]["ownerReferences"] == [owner_reference(OWNER)]
    assert (obj["metadata"]["name"], obj["metadata"]["namespace"]) == ("iris", "ml")


def test_a_rolling_update_never_takes_a_serving_replica_away() -> None:
    strategy = deployment_for(OWNER, SPEC, RELEASE)["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_pods_are_ready_when_the_model_server_says_its_model_is_loaded() -> None:
    probe = container(deployment_for(OWNER, SPEC, RELEASE))["readinessProbe"]
    assert probe["httpGet"] == {"path": "/v2/health/ready", "port": "http"}


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    deployment = deployment_for(OWNER, SPEC, RELEASE)
    pod = deployment["spec"]["template"]["spec"]
    context = container(deployment)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsNonRoot"] is True
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["readOnlyRootFilesystem"] is True
    # fsGroup is allowed by `restricted`; it lets the container's user read the mounted token.
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "hostNetwork" not in pod
    assert "hostPID" not in pod
    assert all("hostPath" not in volume for volume in pod["volumes"])
    assert pod["automountServiceAccountToken"] is False


def test_pods_carry_scrape_annotations_only_when_asked_so_one_scrape_path_sees_them() -> None:
    def annotations(**options: bool) -> dict[str, str]:
        return deployment_for(OWNER, SPEC, RELEASE, **options)["spec"]["template"]["metadata"]["annotations"]

    assert not any(key.startswith("prometheus.io/") for key in annotations())
    asked = annotations(scrape_annotations=True)
    assert asked["prometheus.io/scrape"] == "true"
    assert asked["prometheus.io/port"] == "8080"
    assert asked["prometheus.io/path"] == "/metrics"
    assert asked["example.com/owner"] == annotations()["example.com/owner"] == "ml-platform"


@pytest.mark.parametrize(
    "running",
    [
        RELEASE,
        V1,
        release("v3", image="registry.example/custom-server:1.2"),
        Release("v4", "/m.joblib", "img"),
    ],
)
def test_the_pod_template_carries_the_release_id(running: Release) -> None:
    deployment = deployment_for(OWNER, SPEC, running)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations[ANNOTATION_RELEASE] == release_id(running)
    assert observe(deployment).release_id == release_id(running)


def test_every_field_of_a_release_and_every_retry_make_another_release_id() -> None:
    variants = [
        V1,
        V2,
        release("v1", sha256=SHA256),
        release("v1", image="registry.example/custom-server:1.2"),
        Release("v1", "http://models.ml.svc/iris/other.joblib", V1.image),
    ]
    ids = {release_id(variant) for variant in variants} | {release_id(V1, retries) for retries in (1, 2)}
    assert len(ids) == len(variants) + 2
    assert release_id(V1) == release_id(release("v1")), "the id depends on the release only"


def test_a_retry_changes_the_pod_template_so_the_pods_are_recreated() -> None:
    first = deployment_for(OWNER, SPEC, V1)
    retried = deployment_for(OWNER, SPEC, V1, retries=1)
    assert first["spec"]["template"] != retried["spec"]["template"]
    assert observe(retried).release_id == release_id(V1, 1)


def test_user_pod_annotations_cannot_take_over_the_release_id() -> None:
    spec = ModelDeploymentSpec(
        release=V1, analysis=SPEC.analysis, pod_annotations={ANNOTATION_RELEASE: "forged"}
    )
    annotations = deployment_for(OWNER, spec, V1)["spec"]["template"]["metadata"]["annotations"]
    assert annotations[ANNOTATION_RELEASE] == release_id(V1)


def test_a_webhook_that_mutates_the_pod_template_does_not_change_the_release_it_runs() -> None:
    mutated = deployment_for(OWNER, SPEC, V2)
    container(mutated)["image"] += "@sha256:" + "ab" * 32
    container(mutated)["env"].append({"name": "INJECTED", "value": "1"})
    mutated["spec"]["template"]["metadata"]["annotations"]["sidecar.example/inject"] = "true"
    assert observe(mutated).release_id == release_id(V2)


def test_the_deployment_runs_the_release_it_is_given_not_necessarily_the_specs() -> None:
    rolled_back = deployment_for(OWNER, SPEC, V1)  # spec names v2; a rollback runs v1
    env = {item["name"]: item["value"] for item in container(rolled_back)["env"]}
    assert env["MODEL_VERSION"] == "v1"
    assert env["MODEL_URI"] == V1.uri
    assert "MODEL_SHA256" not in env
    assert rolled_back["metadata"]["labels"][LABEL_VERSION] == "v1"
    assert rolled_back["spec"]["template"]["metadata"]["labels"][LABEL_VERSION] == "v1"


def test_the_selector_is_the_same_for_every_release() -> None:
    selectors = {
        str(deployment_for(OWNER, SPEC, running)["spec"]["selector"]) for running in (V1, V2, RELEASE)
    }
    assert selectors == {str({"matchLabels": {LABEL_MODEL: "iris"}})}


def test_user_pod_labels_cannot_take_over_the_selector() -> None:
    spec = ModelDeploymentSpec(
        release=V1, analysis=SPEC.analysis, pod_labels={LABEL_MODEL: "other", LABEL_VERSION: "v9"}
    )
    labels = deployment_for(OWNER, spec, V1)["spec"]["template"]["metadata"]["labels"]
    assert labels[LABEL_MODEL] == "iris"
    assert labels[LABEL_VERSION] == "v1"


def test_defaults_of_a_minimal_spec() -> None:
    deployment = deployment_for(OWNER, MINIMAL_SPEC, V1)
    assert deployment["spec"]["progressDeadlineSeconds"] == 600
    assert "resources" not in container(deployment)


# --- pod defaults (issue 13: bounded resources, termination, probes) -----------------------------


def test_a_spec_without_resources_gets_the_operators_default_resources() -> None:
    defaults = DEFAULT_MODEL_SERVER_RESOURCES
    built = container(deployment_for(OWNER, MINIMAL_SPEC, V1, default_resources=defaults))
    assert built["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    # Burstable, never BestEffort: a request for memory and CPU, a memory limit, no CPU limit.
    assert "cpu" not in built["resources"]["limits"]


def test_the_specs_resources_win_over_the_defaults_and_empty_defaults_set_none() -> None:
    built = container(deployment_for(OWNER, SPEC, RELEASE, default_resources=DEFAULT_MODEL_SERVER_RESOURCES))
    assert built["resources"] == SPEC.resources
    assert "resources" not in container(deployment_for(OWNER, MINIMAL_SPEC, V1, default_resources={}))


def test_probes_have_explicit_timeouts_and_liveness_is_the_more_patient() -> None:
    built = container(deployment_for(OWNER, SPEC, RELEASE))
    readiness, liveness = built["readinessProbe"], built["livenessProbe"]
    assert readiness["timeoutSeconds"] == 2
    assert liveness["timeoutSeconds"] == 5
    assert (
        liveness["timeoutSeconds"] * liveness["failureThreshold"]
        > readiness["timeoutSeconds"] * readiness["failureThreshold"]
    )


def test_the_grace_period_covers_the_pre_stop_sleep_and_the_servers_drain_with_headroom() -> None:
    pod = deployment_for(OWNER, SPEC, RELEASE)["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop == PRE_STOP_SECONDS
    assert pod["terminationGracePeriodSeconds"] > pre_stop + SERVER_DRAIN_SECONDS
    assert pod["terminationGracePeriodSeconds"] == 45


def test_unpinned_pickles_are_allowed_only_when_the_spec_says_so() -> None:
    def env_of(spec: ModelDeploymentSpec) -> dict[str, str]:
        return {e["name"]: e["value"] for e in container(deployment_for(OWNER, spec, V1))["env"]}

    assert "MODEL_ALLOW_UNPINNED_PICKLE" not in env_of(MINIMAL_SPEC)
    allowed = ModelDeploymentSpec(release=V1, analysis=SPEC.analysis, allow_unpinned_pickle=True)
    assert env_of(allowed)["MODEL_ALLOW_UNPINNED_PICKLE"] == "true"


# --- the feedback token ------------------------------------------------------------------------


def test_the_feedback_token_is_mounted_read_only_and_named_in_the_env() -> None:
    deployment = deployment_for(OWNER, SPEC, RELEASE)
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in container(deployment)["env"]}
    assert env["MODEL_FEEDBACK_TOKEN_FILE"] == "/var/run/vigil/feedback/token"
    mount = next(m for m in container(deployment)["volumeMounts"] if m["name"] == "feedback-token")
    assert mount == {"name": "feedback-token", "mountPath": "/var/run/vigil/feedback", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "feedback-token")
    # No subPath: the kubelet updates a mounted Secret in place only without one (rotation).
    assert "subPath" not in mount
    assert volume == {
        "name": "feedback-token",
        "secret": {
            "secretName": "iris-feedback",
            "items": [{"key": "token", "path": "token"}],
            "defaultMode": 0o440,
        },
    }
    assert "optional" not in volume["secret"], "no token, no pod: feedback is never left unauthenticated"


# --- pvc:// models --------------------------------------------------------------------------------


def test_a_pvc_model_mounts_its_claim_read_only_where_the_server_looks() -> None:
    on_claim = Release("v3", "pvc://model-store/iris/v3/model.joblib", RELEASE.image, SHA256)

    for deployment in (
        deployment_for(OWNER, SPEC, on_claim),
        candidate_deployment_for(OWNER, SPEC, on_claim, stable_version="v2", replicas=1, in_service=False),
    ):
        pod = deployment["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "model-pvc")
        mount = next(m for m in container(deployment)["volumeMounts"] if m["name"] == "model-pvc")
        env = {e["name"]: e["value"] for e in container(deployment)["env"]}
        assert volume == {
            "name": "model-pvc",
            "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True},
        }
        assert mount == {"name": "model-pvc", "mountPath": "/var/lib/vigil/pvc/model-store", "readOnly": True}
        # The server maps the URI itself (MODEL_PVC_ROOT defaults to the mount's parent).
        assert env["MODEL_URI"] == "pvc://model-store/iris/v3/model.joblib"


@pytest.mark.parametrize(
    "uri", ["http://models.ml.svc/iris/v2/model.joblib", "s3://models/iris/v2.joblib", "/models/pvc/m.joblib"]
)
def test_a_model_from_anywhere_else_mounts_no_claim(uri: str) -> None:
    deployment = deployment_for(OWNER, SPEC, Release("v2", uri, RELEASE.image, SHA256))

    assert "model-pvc" not in yaml.safe_dump(deployment)


def test_rolling_back_from_a_pvc_model_drops_its_claim_and_changes_the_spec_hash() -> None:
    on_claim = deployment_for(OWNER, SPEC, Release("v3", "pvc://model-store/iris/v3", RELEASE.image, SHA256))
    back = deployment_for(OWNER, SPEC, RELEASE)

    assert "model-pvc" not in yaml.safe_dump(back)
    assert on_claim["metadata"]["labels"][LABEL_SPEC_HASH] != back["metadata"]["labels"][LABEL_SPEC_HASH]


def test_the_token_itself_never_reaches_the_deployment_so_rotation_restarts_no_pod() -> None:
    # deployment_for has no token input at all; the template names the Secret only.
    text = yaml.safe_dump(deployment_for(OWNER, SPEC, RELEASE))
    assert "iris-feedback" in text
    assert "vigil.dev/feedback-token-rotation" not in text


def test_replicas_unset_in_the_spec_are_left_out_so_the_operator_never_owns_them() -> None:
    assert MINIMAL_SPEC.replicas is None
    assert "replicas" not in deployment_for(OWNER, MINIMAL_SPEC, V1)["spec"]
    assert deployment_for(OWNER, SPEC, V1)["spec"]["replicas"] == 2
    zero = ModelDeploymentSpec(release=V1, analysis=SPEC.analysis, replicas=0)
    assert deployment_for(OWNER, zero, V1)["spec"]["replicas"] == 0


def test_the_spec_hash_changes_with_the_release_and_only_with_the_spec() -> None:
    first = deployment_for(OWNER, SPEC, V1)
    assert first["metadata"]["labels"][LABEL_SPEC_HASH] == spec_hash(first["spec"])
    again = deployment_for(OWNER, SPEC, V1)
    assert again["metadata"]["labels"] == first["metadata"]["labels"]
    other = deployment_for(OWNER, SPEC, V2)
    assert other["metadata"]["labels"][LABEL_SPEC_HASH] != spec_hash(first["spec"])


def test_a_deployment_without_the_release_annotation_runs_no_known_release() -> None:
    # Made by hand, by an older operator, or `kubectl rollout undo` to such a template.
    unannotated = deployment_for(OWNER, SPEC, V1)
    del unannotated["spec"]["template"]["metadata"]["annotations"][ANNOTATION_RELEASE]
    for foreign in ({}, {"spec": None}, {"spec": {"template": {"metadata": None}}}, unannotated):
        assert observe(foreign).release_id is None


# --- the Service ----------------------------------------------------------------------------


def test_the_service_selects_whichever_release_serves() -> None:
    service = service_for(OWNER)
    deployment = deployment_for(OWNER, SPEC, V1)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


# --- reading a Deployment's rollout -----------------------------------------------------------


def observed_deployment(
    *,
    generation: int = 2,
    observed_generation: int = 2,
    wanted: int = 2,
    conditions: Any = (),
    **status: int,
) -> dict[str, Any]:
    deployment = deployment_for(OWNER, SPEC, V2)
    deployment["spec"]["replicas"] = wanted
    deployment["metadata"]["generation"] = generation
    deployment["status"] = {
        "observedGeneration": observed_generation,
        "conditions": list(conditions),
        **status,
    }
    return deployment


DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
PROGRESSING = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}


@pytest.mark.parametrize(
    ("status", "available"),
    [
        ({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}, True),
        ({"replicas": 2, "updatedReplicas": 1, "availableReplicas": 2}, False),  # one still old
        ({"replicas": 3, "updatedReplicas": 2, "availableReplicas": 3}, False),  # old pod not gone yet
        ({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}, False),  # one not ready
        ({}, False),
    ],
    ids=["rolled-out", "updating", "old-replica-terminating", "not-ready", "no-status"],
)
def test_available_means_every_replica_updated_and_available(status: dict[str, int], available: bool) -> None:
    observed = observe(observed_deployment(conditions=[PROGRESSING], **status))
    assert (observed.release_id, observed.available, observed.deadline_exceeded) == (
        release_id(V2),
        available,
        False,
    )


def test_a_status_from_before_the_last_change_says_nothing_about_availability() -> None:
    stale = observed_deployment(
        generation=3, observed_generation=2, replicas=2, updatedReplicas=2, availableReplicas=2
    )
    assert observe(stale).available is False


def test_the_progress_deadline_is_read_from_the_progressing_condition() -> None:
    observed = observe(observed_deployment(conditions=[DEADLINE], replicas=2, updatedReplicas=1))
    assert observed.deadline_exceeded is True
    assert observed.available is False


def test_a_progress_deadline_from_before_the_last_change_is_not_the_new_releases() -> None:
    # Right after a rollback the Deployment's template is patched; until its controller has seen that,
    # the status still carries the failed release's ProgressDeadlineExceeded.
    stale = observed_deployment(generation=4, observed_generation=3, conditions=[DEADLINE], updatedReplicas=0)
    assert observe(stale).deadline_exceeded is False


def test_a_progress_deadline_stamped_before_the_current_rollout_started_does_not_count() -> None:
    # The controller keeps the failed release's condition while the restored release rolls back in.
    started = datetime(2026, 1, 1, 12, 0, 30, 500000, tzinfo=UTC)
    before = {
        **DEADLINE,
        "lastUpdateTime": "2026-01-01T12:00:29Z",
        "lastTransitionTime": "2026-01-01T12:00:29Z",
    }
    after = {
        **DEADLINE,
        "lastUpdateTime": "2026-01-01T12:00:45Z",
        "lastTransitionTime": "2026-01-01T12:00:45Z",
    }
    assert (
        observe(observed_deployment(conditions=[before], updatedReplicas=1), started).deadline_exceeded
        is False
    )
    assert (
        observe(observed_deployment(conditions=[after], updatedReplicas=1), started).deadline_exceeded is True
    )


# --- keeping the Deployment as declared: what an apply reverted ---------------------------------


def stored(deployment: dict[str, Any]) -> dict[str, Any]:
    """The Deployment as the API server keeps it: defaults and a webhook's mutations added."""
    live = copy.deepcopy(deployment)
    live["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "3"
    live["spec"].setdefault("replicas", 1)
    pod = live["spec"]["template"]["spec"]
    pod |= {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always"}
    container(live)["image"] += "@sha256:" + "cd" * 32
    container(live)["env"].append({"name": "INJECTED", "value": "1"})
    container(live)["imagePullPolicy"] = "IfNotPresent"
    return live


def test_an_apply_that_changes_nothing_reports_no_drift() -> None:
    wanted = deployment_for(OWNER, SPEC, V1)
    assert drift(stored(wanted), stored(wanted), wanted) == []


def test_an_edit_of_an_owned_field_is_reported_as_reverted() -> None:
    wanted = deployment_for(OWNER, SPEC, V1)
    edited = stored(wanted)
    container(edited)["image"] = "evil:latest"  # kubectl set image
    edited["spec"]["replicas"] = 5  # kubectl scale
    env = {item["name"]: item for item in container(edited)["env"]}
    env["MODEL_VERSION"]["value"] = "v0"
    changes = drift(edited, stored(wanted), wanted)
    assert changes == [
        "spec.replicas: 5 -> 2",
        "spec.template.spec.containers[model-server].image: "
        f'"evil:latest" -> "{container(stored(wanted))["image"]}"',
        'spec.template.spec.containers[model-server].env[MODEL_VERSION].value: "v0" -> "v1"',
    ]


def test_a_template_rolled_back_by_hand_is_reported_field_by_field() -> None:
    wanted = deployment_for(OWNER, SPEC, V2)
    undone = stored(deployment_for(OWNER, SPEC, V1))  # kubectl rollout undo: the v1 template
    # Undo restores the template and the old ReplicaSet's annotations; the labels stay.
    undone["metadata"]["labels"] = copy.deepcopy(wanted["metadata"]["labels"])
    changes = drift(undone, stored(wanted), wanted)
    assert f"[{ANNOTATION_RELEASE}]" not in " ".join(changes)
    assert any(
        change.startswith(f"spec.template.metadata.annotations.{ANNOTATION_RELEASE}:") for change in changes
    )
    assert 'spec.template.spec.containers[model-server].env[MODEL_VERSION].value: "v1" -> "v2"' in changes


def test_replicas_the_operator_does_not_own_are_never_drift() -> None:
    wanted = deployment_for(OWNER, MINIMAL_SPEC, V1)
    scaled = stored(wanted)
    scaled["spec"]["replicas"] = 7  # an HPA or kubectl scale
    assert drift(scaled, scaled, wanted) == []


def test_labels_and_annotations_the_operator_sets_are_kept_too() -> None:
    wanted = deployment_for(OWNER, SPEC, V1)
    edited = stored(wanted)
    del edited["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    assert drift(edited, stored(wanted), wanted) == [
        'metadata.labels.app.kubernetes.io/managed-by: (unset) -> "vigil"'
    ]


def test_a_rollout_is_not_drift() -> None:
    before = stored(deployment_for(OWNER, SPEC, V1))
    wanted = deployment_for(OWNER, SPEC, V2)
    assert drift(before, stored(wanted), wanted) == []
    assert drift(None, stored(wanted), wanted) == []


# --- Shadow and Canary: the candidate's own Deployment and Service ---------------------------

STABLE = release("v1", sha256=SHA256)


def test_candidate_deployments_match_the_golden_files() -> None:
    shadow = candidate_deployment_for(OWNER, SPEC, RELEASE, stable_version="v1", replicas=2, in_service=False)
    golden("candidate-deployment-shadow.yaml", "candidate_deployment_for", shadow)
    golden("candidate-service.yaml", "candidate_service_for", candidate_service_for(OWNER))


@pytest.mark.parametrize("in_service", [False, True], ids=["shadow", "canary"])
def test_only_a_canary_is_selected_by_the_model_deployments_service(in_service: bool) -> None:
    """A shadow's pods lack the label the user-facing Service selects: it never answers a user."""
    built = candidate_deployment_for(
        OWNER, SPEC, RELEASE, stable_version="v1", replicas=1, in_service=in_service
    )
    pods = built["spec"]["template"]["metadata"]["labels"]
    service_selector = service_for(OWNER)["spec"]["selector"]
    assert (service_selector.items() <= pods.items()) is in_service
    # Its own selector and its own Service's match it as a shadow and as a canary alike.
    assert built["spec"]["selector"]["matchLabels"].items() <= pods.items()
    assert candidate_service_for(OWNER)["spec"]["selector"].items() <= pods.items()
    # The main Deployment's pods are never selected by the candidate's Deployment or Service.
    main_pods = deployment_for(OWNER, SPEC, STABLE)["spec"]["template"]["metadata"]["labels"]
    assert not built["spec"]["selector"]["matchLabels"].items() <= main_pods.items()
    assert not candidate_service_for(OWNER)["spec"]["selector"].items() <= main_pods.items()


def test_the_candidate_selector_is_the_same_as_a_shadow_and_as_a_canary() -> None:
    """Selectors are immutable: a shadow followed by canary steps changes pod labels only."""
    selectors = {
        str(
            candidate_deployment_for(OWNER, SPEC, RELEASE, stable_version="v1", replicas=1, in_service=side)[
                "spec"
            ]["selector"]
        )
        for side in (False, True)
    }
    assert len(selectors) == 1


def test_the_candidate_knows_the_stable_version_and_mounts_the_same_feedback_token() -> None:
    built = candidate_deployment_for(OWNER, SPEC, RELEASE, stable_version="v1", replicas=3, in_service=False)
    env = {item["name"]: item["value"] for item in container(built)["env"]}
    assert env["STABLE_VERSION"] == "v1"
    assert env["MODEL_VERSION"] == "v2"
    assert "MIRROR_URL" not in env
    assert built["metadata"]["name"] == "iris-candidate"
    assert built["spec"]["replicas"] == 3
    main = deployment_for(OWNER, SPEC, STABLE)
    assert built["spec"]["template"]["spec"]["volumes"] == main["spec"]["template"]["spec"]["volumes"]
    assert container(built)["volumeMounts"] == container(main)["volumeMounts"]


def test_the_stable_servers_mirror_to_the_url_they_are_given() -> None:
    mirroring = deployment_for(OWNER, SPEC, STABLE, mirror_url="http://10.96.0.12:80")
    env = {item["name"]: item["value"] for item in container(mirroring)["env"]}
    assert env["MIRROR_URL"] == "http://10.96.0.12:80"
    assert "STABLE_VERSION" not in env
    plain = deployment_for(OWNER, SPEC, STABLE)
    assert "MIRROR_URL" not in {item["name"] for item in container(plain)["env"]}
    # Same selector, so an existing ModelDeployment's Deployment is patched, never recreated.
    assert mirroring["spec"]["selector"] == plain["spec"]["selector"]


@pytest.mark.parametrize(("replicas", "expected"), [("spec", 2), (3, 3), (None, None)])
def test_the_main_deployment_takes_the_replicas_its_track_gets(replicas: Any, expected: int | None) -> None:
    assert deployment_for(OWNER, SPEC, STABLE, replicas=replicas)["spec"].get("replicas") == expected


@pytest.mark.parametrize(
    ("spec", "url"),
    [
        ({"clusterIP": "10.96.0.12", "ports": [{"port": 80}]}, "http://10.96.0.12:80"),
        ({"clusterIP": "fd00::12", "ports": [{"port": 80}]}, "http://[fd00::12]:80"),
        ({"clusterIP": "None"}, None),
        ({}, None),
    ],
)
def test_the_mirror_goes_to_the_candidate_services_cluster_ip(spec: dict[str, Any], url: str | None) -> None:
    assert service_url({"spec": spec}) == url


def _candidate_observed(in_service: bool, generation: int = 2, **status: int) -> dict[str, Any]:
    built = candidate_deployment_for(OWNER, SPEC, V2, stable_version="v1", replicas=2, in_service=in_service)
    built["metadata"]["generation"] = generation
    built["status"] = {"observedGeneration": 2, **status}
    return built


@pytest.mark.parametrize(
    ("in_service", "generation", "status", "ready"),
    [
        (True, 2, {"updatedReplicas": 2, "availableReplicas": 2}, 2),
        (True, 2, {"updatedReplicas": 1, "availableReplicas": 3}, 1),  # a roll: old pods available
        (True, 2, {"updatedReplicas": 2, "availableReplicas": 1}, 1),
        (True, 3, {"updatedReplicas": 2, "availableReplicas": 2}, 0),  # not seen its last change yet
        (False, 2, {"updatedReplicas": 2, "availableReplicas": 2}, 0),  # a shadow answers no user
    ],
    ids=["canary-ready", "canary-rolling", "canary-one-not-ready", "stale-status", "shadow"],
)
def test_a_canarys_ready_pods_behind_the_service_are_counted(
    in_service: bool, generation: int, status: dict[str, int], ready: int
) -> None:
    observed = observe(_candidate_observed(in_service, generation, **status))
    assert observed.ready_in_service == ready


def test_a_deployment_that_carries_every_owned_field_needs_no_apply() -> None:
    wanted = deployment_for(OWNER, SPEC, SPEC.release)
    live = copy.deepcopy(wanted)
    live["status"] = {"replicas": 1}
    live["spec"]["template"]["metadata"]["annotations"]["injected-by-webhook"] = "yes"
    live["spec"]["template"]["spec"]["schedulerName"] = "default-scheduler"  # a server default, not owned
    assert not needs_apply(live, wanted)
    assert needs_apply(None, wanted)
    edited = copy.deepcopy(live)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:1"
    assert needs_apply(edited, wanted)
    other_intent = copy.deepcopy(live)
    other_intent["metadata"]["labels"]["vigil.dev/spec-hash"] = "0000"
    assert needs_apply(other_intent, wanted)
