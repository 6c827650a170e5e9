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
    Owner,
    deployment_for,
    observe,
    owner_reference,
    release_of,
    service_for,
    spec_hash,
)
from vigil_operator.constants import ANNOTATION_SPEC_HASH, LABEL_MODEL, LABEL_VERSION
from vigil_operator.decisions import ObservedDeployment
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
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert "hostNetwork" not in pod
    assert "hostPID" not in pod
    assert all("hostPath" not in volume for volume in pod["volumes"])
    assert pod["automountServiceAccountToken"] is False


def test_prometheus_scrapes_the_pods() -> None:
    annotations = deployment_for(OWNER, SPEC, RELEASE)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["example.com/owner"] == "ml-platform"


@pytest.mark.parametrize(
    "running",
    [
        RELEASE,
        V1,
        release("v3", image="registry.example/custom-server:1.2"),
        Release("v4", "/m.joblib", "img"),
    ],
)
def test_the_release_reads_back_from_the_deployment_it_made(running: Release) -> None:
    assert release_of(deployment_for(OWNER, SPEC, running)) == running


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
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["progressDeadlineSeconds"] == 600
    assert "resources" not in container(deployment)


def test_the_spec_hash_changes_with_the_release_and_only_with_the_spec() -> None:
    first = deployment_for(OWNER, SPEC, V1)
    assert first["metadata"]["annotations"][ANNOTATION_SPEC_HASH] == spec_hash(first["spec"])
    again = deployment_for(OWNER, SPEC, V1)
    assert again["metadata"]["annotations"] == first["metadata"]["annotations"]
    other = deployment_for(OWNER, SPEC, V2)
    assert other["metadata"]["annotations"][ANNOTATION_SPEC_HASH] != spec_hash(first["spec"])


def test_release_of_a_deployment_that_is_not_ours_is_none() -> None:
    ours = deployment_for(OWNER, SPEC, V1)
    no_containers = copy.deepcopy(ours)
    no_containers["spec"]["template"]["spec"]["containers"] = []
    no_version = copy.deepcopy(ours)
    container(no_version)["env"] = [e for e in container(no_version)["env"] if e["name"] != "MODEL_VERSION"]
    for foreign in ({}, {"spec": None}, no_containers, no_version):
        assert release_of(foreign) is None


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
    assert observed == ObservedDeployment(release=V2, available=available, deadline_exceeded=False)


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
