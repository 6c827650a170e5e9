"""End to end: the operator owns its Deployment, whatever else touches it.

Rollouts are tracked by the operator's own pod-template annotation, so a real mutating
admission webhook (a process this test starts, registered with a MutatingWebhookConfiguration)
that pins image digests and injects env vars does not hold a rollout up. A Deployment the API
server refuses is reported with the API server's message; edits of the owned Deployment are
reverted within a round; a release degraded by its progress deadline recovers.
"""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.models import TrainedModel
from harness.ports import free_port
from harness.waiting import wait_for

from .conftest import Stack, condition, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus]

RELEASE_ANNOTATION = "vigil.dev/release"
INJECTED_ENV = "INJECTED_BY_WEBHOOK"

# The webhook: for the model-server container of a Deployment, pin the image to a digest (as
# image-verification policies do) and inject an env var. Deterministic, so applying the same
# Deployment again changes nothing.
WEBHOOK_SERVER = """
import base64, hashlib, http.server, json, ssl, sys

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def patch_for(deployment):
    patch = []
    containers = deployment["spec"]["template"]["spec"]["containers"]
    for index, container in enumerate(containers):
        if container["name"] != "model-server":
            continue
        path = f"/spec/template/spec/containers/{index}"
        if "@" not in container["image"]:
            digest = hashlib.sha256(container["image"].encode()).hexdigest()
            pinned = f"{container['image']}@sha256:{digest}"
            patch.append({"op": "replace", "path": f"{path}/image", "value": pinned})
        env = container.get("env") or []
        if not any(item.get("name") == "INJECTED_BY_WEBHOOK" for item in env):
            item = {"name": "INJECTED_BY_WEBHOOK", "value": "1"}
            patch.append({"op": "add", "path": f"{path}/env/-", "value": item} if env
                         else {"op": "add", "path": f"{path}/env", "value": [item]})
    return patch


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        patch = patch_for(request["object"])
        response = {"uid": request["uid"], "allowed": True}
        if patch:
            encoded = base64.b64encode(json.dumps(patch).encode()).decode()
            response |= {"patchType": "JSONPatch", "patch": encoded}
        print("mutated" if patch else "unchanged", request["operation"], request["name"], flush=True)
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        body = json.dumps(review)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(folder: Path) -> Path:
    """A throw-away CA and a serving certificate for 127.0.0.1 signed by it; returns the CA file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=vigil-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=folder,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        cwd=folder,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "tls.crt",
        cwd=folder,
    )
    return folder / "ca.crt"


@pytest.fixture
def mutating_webhook(stack: Stack, tmp_path: Path) -> Iterator[Any]:
    """The webhook process, registered for the Deployments Vigil manages in this test's namespace."""
    folder = tmp_path / "webhook"
    ca = _certificates(folder)
    (folder / "webhook.py").write_text(WEBHOOK_SERVER)
    port = free_port()
    argv = [
        sys.executable,
        str(folder / "webhook.py"),
        str(port),
        str(folder / "tls.crt"),
        str(folder / "tls.key"),
    ]
    process = stack.processes.start("mutating-webhook", argv)
    tls = ssl.create_default_context(cafile=str(ca))
    wait_for(
        lambda: httpx.get(f"https://127.0.0.1:{port}/", verify=tls, timeout=1).status_code == 200,
        timeout=30,
        what="the webhook serving TLS",
    )
    name = f"vigil-digest-pinning-{stack.namespace}"
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "pin-digests.vigil.test",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/mutate",
                    "caBundle": base64.b64encode(ca.read_bytes()).decode(),
                },
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["deployments"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": stack.namespace}},
                "objectSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "vigil"}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
            }
        ],
    }
    stack.apply(configuration)
    try:
        yield process
    finally:
        stack.cluster.kubectl(
            "delete", "mutatingwebhookconfiguration", name, "--ignore-not-found", check=False
        )


def model_server(deployment: dict[str, Any]) -> dict[str, Any]:
    return next(
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "model-server"
    )


def release_annotation(deployment: dict[str, Any]) -> str:
    return deployment["spec"]["template"]["metadata"]["annotations"][RELEASE_ANNOTATION]


def apply_version(stack: Stack, version: str, model: TrainedModel, **options: Any) -> dict[str, Any]:
    manifest = model_deployment("iris", stack.namespace, version, model, prometheus_url=stack.prometheus.url)
    manifest["spec"] |= options
    manifest["spec"] = {key: value for key, value in manifest["spec"].items() if value is not None}
    stack.apply(manifest)
    return manifest


def later_checks(stack: Stack, count: int) -> None:
    """Wait until `count` more checks ran: that many reconcile rounds, each applying the Deployment."""
    for _ in range(count):
        seen = stack.status("iris")["lastCheck"]["time"]
        stack.wait_status("iris", lambda s, seen=seen: s["lastCheck"]["time"] != seen, what="a later check")


def drift_messages(stack: Stack) -> list[str]:
    return [e["message"] for e in stack.events("iris") if e["reason"] == "DriftCorrected"]


# --- a) admission webhooks that mutate the pod template ----------------------------------------


def test_rollouts_are_judged_whatever_a_mutating_webhook_changes(
    stack: Stack, models: dict[str, TrainedModel], mutating_webhook: Any
) -> None:
    stack.start_operator()
    apply_version(stack, "v1", models["good"])
    stack.wait_status("iris", promoted("v1"), what="v1 promoted through the webhook")
    deployment = stack.deployment("iris")
    assert "@sha256:" in model_server(deployment)["image"], "the webhook pinned the image"
    assert INJECTED_ENV in {item["name"] for item in model_server(deployment)["env"]}

    apply_version(stack, "v2", models["good-too"])
    status = stack.wait_status("iris", promoted("v2"), what="v2 judged and promoted")
    assert condition(status, "Ready")["status"] == "True"
    assert stack.deployment_version("iris") == "v2"
    assert "@sha256:" in model_server(stack.deployment("iris"))["image"]

    apply_version(stack, "v3", models["bad"])
    status = stack.wait_status(
        "iris", lambda s: s.get("phase") == "RolledBack", what="v3 judged, rolled back"
    )
    assert (status["failedVersion"], status["currentVersion"]) == ("v3", "v2")
    assert status["lastCheck"]["verdict"] == "fail"
    wait_for(lambda: stack.deployment_version("iris") == "v2", timeout=30, what="Deployment back on v2")
    reasons = stack.wait_reason("iris", "RolledBack")
    assert reasons.count("Promoted") == 2
    assert "DriftCorrected" not in reasons, "what the webhook adds is not drift"
    assert "mutated" in mutating_webhook.log()


# --- b) a Deployment the API server refuses --------------------------------------------------


def test_a_refused_deployment_is_reported_with_the_api_servers_message_and_recovers(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    stack.start_operator()
    apply_version(stack, "v1", models["good"], podLabels={"team name": "fraud"})  # the CRD lets keys through
    status = stack.wait_status(
        "iris", lambda s: condition(s, "Degraded").get("reason") == "ApplyFailed", what="Degraded/ApplyFailed"
    )
    degraded = condition(status, "Degraded")
    assert degraded["status"] == "True"
    assert "team name" in degraded["message"]
    assert "Invalid value" in degraded["message"]
    assert status["applyError"] in degraded["message"]
    assert status["phase"] == "Progressing"
    stack.wait_reason("iris", "ApplyFailed")
    [event] = [e for e in stack.events("iris") if e["reason"] == "ApplyFailed"]
    assert event["type"] == "Warning"
    assert "team name" in event["message"]
    assert (
        stack.api.client.get(f"/apis/apps/v1/namespaces/{stack.namespace}/deployments/iris").status_code
        == 404
    )

    apply_version(stack, "v1", models["good"], podLabels={"team": "fraud"})
    status = stack.wait_status("iris", promoted("v1"), what="v1 promoted once the spec is fixed")
    assert condition(status, "Degraded")["status"] == "False"
    assert "applyError" not in status
    assert stack.deployment("iris")["spec"]["template"]["metadata"]["labels"]["team"] == "fraud"
    assert stack.reasons("iris").count("ApplyFailed") == 1, "one event per refusal, not one per round"


# --- c) edits of the owned Deployment --------------------------------------------------------


def test_edits_of_the_owned_deployment_are_reverted_within_a_round(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    stack.start_operator()
    apply_version(stack, "v1", models["good"])
    stack.wait_status("iris", promoted("v1"), what="v1 promoted")
    apply_version(stack, "v2", models["good-too"])
    stack.wait_status("iris", promoted("v2"), what="v2 promoted")
    declared = stack.deployment("iris")
    kubectl, namespace = stack.cluster.kubectl, stack.namespace

    kubectl("rollout", "undo", "deployment/iris", "-n", namespace)  # back to the v1 template
    stack.wait_reason("iris", "DriftCorrected")
    assert any('env[MODEL_VERSION].value: "v1" -> "v2"' in message for message in drift_messages(stack))
    wait_for(lambda: stack.deployment_version("iris") == "v2", timeout=10, what="the v2 template again")

    kubectl("set", "image", "deployment/iris", "model-server=evil:latest", "-n", namespace)
    stack.wait_reason("iris", "DriftCorrected", count=2)
    reverted_image = 'containers[model-server].image: "evil:latest" -> "vigil-model-server:test"'
    assert any(reverted_image in message for message in drift_messages(stack))
    assert model_server(stack.deployment("iris"))["image"] == "vigil-model-server:test"

    kubectl("scale", "deployment/iris", "--replicas=3", "-n", namespace)
    stack.wait_reason("iris", "DriftCorrected", count=3)
    assert any("spec.replicas: 3 -> 1" in message for message in drift_messages(stack))
    assert stack.deployment("iris")["spec"]["replicas"] == 1

    restored = stack.deployment("iris")
    assert restored["spec"]["template"] == declared["spec"]["template"]
    assert release_annotation(restored) == release_annotation(declared)
    status = stack.status("iris")
    assert (status["phase"], status["currentVersion"]) == ("Promoted", "v2")

    # Every round applies the Deployment; with nothing to correct, that writes nothing.
    generation = restored["metadata"]["generation"]
    later_checks(stack, 3)
    assert stack.deployment("iris")["metadata"]["generation"] == generation
    assert len(drift_messages(stack)) == 3


def test_with_replicas_unset_kubectl_scale_is_left_alone(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    stack.start_operator()
    apply_version(stack, "v1", models["good"], replicas=None)
    stack.wait_status("iris", promoted("v1"), what="v1 promoted")
    owned = [
        entry
        for entry in stack.deployment("iris")["metadata"]["managedFields"]
        if entry["manager"] == "vigil-operator"
    ]
    assert owned
    assert all("f:replicas" not in entry["fieldsV1"].get("f:spec", {}) for entry in owned)

    stack.cluster.kubectl(
        "scale", "deployment/iris", "--replicas=2", "-n", stack.namespace
    )  # as an HPA would
    later_checks(stack, 3)
    assert stack.deployment("iris")["spec"]["replicas"] == 2
    assert "DriftCorrected" not in stack.reasons("iris")
    assert stack.status("iris")["phase"] == "Promoted"


# --- d) Degraded recovers ----------------------------------------------------------------------


def late_model(tmp_path: Path, model: TrainedModel) -> tuple[TrainedModel, Any]:
    """A model whose file appears only when the returned function is called (a slow volume, say)."""
    late = TrainedModel(path=tmp_path / "late" / "model.joblib", sha256=model.sha256)
    late.path.parent.mkdir(parents=True, exist_ok=True)
    return late, lambda: shutil.copy(model.path, late.path)


def make_pods_available(stack: Stack, provide: Any) -> None:
    """Provide the model file and restart the unready server, as a kubelet restarts a container."""
    provide()
    server = stack.kubelet.server_for("v1")
    assert server is not None
    server.process.kill()


def test_a_first_release_degraded_by_its_deadline_becomes_ready_when_its_pods_do(
    stack: Stack, models: dict[str, TrainedModel], tmp_path: Path
) -> None:
    late, provide = late_model(tmp_path, models["good"])
    stack.start_operator()
    apply_version(stack, "v1", late, progressDeadlineSeconds=10)
    status = stack.wait_status(
        "iris", lambda s: s.get("phase") == "Degraded", what="Degraded at the deadline"
    )
    assert condition(status, "Degraded")["reason"] == "ProgressDeadlineExceeded"
    stack.wait_reason("iris", "ProgressDeadlineExceeded")

    make_pods_available(stack, provide)
    status = stack.wait_status("iris", promoted("v1"), what="v1 serving, analysed and promoted")
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Degraded")["status"] == "False"
    stack.wait_reason("iris", "RolloutComplete")
    [complete] = [e["message"] for e in stack.events("iris") if e["reason"] == "RolloutComplete"]
    assert "after its progress deadline" in complete


def test_retry_after_a_missed_deadline_restarts_the_rollout(
    stack: Stack, models: dict[str, TrainedModel], tmp_path: Path
) -> None:
    late, provide = late_model(tmp_path, models["good"])
    stack.start_operator()
    apply_version(stack, "v1", late, progressDeadlineSeconds=15)
    degraded = stack.wait_status(
        "iris", lambda s: s.get("phase") == "Degraded", what="Degraded at the deadline"
    )
    before = stack.deployment("iris")

    stack.cluster.kubectl("annotate", "mdep", "iris", "-n", stack.namespace, "vigil.dev/action=retry")
    status = stack.wait_status("iris", lambda s: s.get("retries") == 1, what="the retry handled", timeout=30)
    assert status["phase"] == "Progressing", "a retry restarts the rollout; it does not degrade again at once"
    assert status["rolloutStartedAt"] > degraded["rolloutStartedAt"]
    wait_for(
        lambda: release_annotation(stack.deployment("iris")) != release_annotation(before),
        timeout=10,
        what="a new pod template (new release id)",
    )
    assert release_annotation(stack.deployment("iris")).endswith("-1")
    stack.wait_reason("iris", "RetryRequested")

    make_pods_available(stack, provide)
    status = stack.wait_status("iris", promoted("v1"), what="v1 promoted after the retry")
    assert condition(status, "Ready")["status"] == "True"
    assert stack.reasons("iris").count("ProgressDeadlineExceeded") == 1
