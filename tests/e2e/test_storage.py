"""End to end with models in a real S3-compatible server (SeaweedFS): a rollout from s3:// that
is promoted, then one that is rolled back on accuracy, the servers reading the bucket with the
standard AWS_* environment, as a user sets it up: the keys in a Secret, given to the pods through
spec.podTemplate (envFrom), the endpoint and region as plain env.

On kwok's nodes the stand-in kubelet runs the model servers and resolves the pod's env as a
kubelet would (literal values, then Secrets through envFrom and valueFrom).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.models import TrainedModel
from harness.processes import ProcessGroup
from harness.s3server import S3Server

from .conftest import Stack, condition, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus]

BUCKET = "models"


@pytest.fixture
def s3(tmp_path: Path, models: dict[str, TrainedModel]) -> Iterator[S3Server]:
    """SeaweedFS holding the good model as iris/v1 and the degraded one as iris/v2."""
    processes = ProcessGroup(log_dir=tmp_path / "s3-logs")
    server = S3Server.start(tmp_path / "s3", processes)
    server.create_bucket(BUCKET)
    server.put(BUCKET, "iris/v1/model.joblib", models["good"].path.read_bytes())
    server.put(BUCKET, "iris/v2/model.joblib", models["bad"].path.read_bytes())
    yield server
    processes.close()


def from_s3(stack: Stack, s3: S3Server, version: str, model: TrainedModel) -> dict:
    manifest = model_deployment("iris", stack.namespace, version, model, prometheus_url=stack.prometheus.url)
    manifest["spec"]["model"]["uri"] = f"s3://{BUCKET}/iris/{version}/model.joblib"
    manifest["spec"]["podTemplate"] = {
        "spec": {
            "env": [
                {"name": "AWS_ENDPOINT_URL", "value": s3.endpoint},
                {"name": "AWS_REGION", "value": "us-east-1"},
            ],
            "envFrom": [{"secretRef": {"name": "s3-reader"}}],
        }
    }
    return manifest


def test_a_rollout_from_s3_is_promoted_and_a_bad_one_rolled_back(
    stack: Stack, s3: S3Server, models: dict[str, TrainedModel]
) -> None:
    stack.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3-reader", "namespace": stack.namespace},
            "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key},
        }
    )
    stack.start_operator()
    stack.apply(from_s3(stack, s3, "v1", models["good"]))
    stack.wait_status("iris", promoted("v1"), what="v1 from s3:// promoted")

    stack.apply(from_s3(stack, s3, "v2", models["bad"]))
    status = stack.wait_status("iris", lambda s: s.get("phase") == "RolledBack", what="v2 rolled back")

    assert status["currentVersion"] == "v1"
    assert status["failedVersion"] == "v2"
    assert condition(status, "RolledBack")["reason"] == "AnalysisFailed"
    assert stack.deployment_version("iris") == "v1"
    assert [h["uri"] for h in status["history"] if h["version"] == "v2"] == [
        "s3://models/iris/v2/model.joblib"
    ]
    for version in ("v1", "v2"):
        server = stack.kubelet.server_for(version)
        assert server is not None
        log = server.process.log()
        assert f"s3://models/iris/{version}/model.joblib" in log
        assert s3.secret_key not in log
