"""Storage schemes: pvc:// on the local filesystem, gs:// and s3:// URIs and settings, and that no
credential reaches a message. (s3:// against a real S3 server: tests/integration/model_server/
test_model_server_s3.py.)"""

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.model_store import ModelStore
from vigil_model_server.loader import LoadError, LoadOptions, StoreUnavailable, load_model
from vigil_model_server.object_store import (
    _gcs_config,
    _s3_config,
    parse_object_uri,
    scrub,
)
from vigil_model_server.settings import parse_settings

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def pinned(content: bytes, **options: object) -> LoadOptions:
    return LoadOptions(sha256=hashlib.sha256(content).hexdigest(), **options)  # type: ignore[arg-type]


@pytest.fixture
def pvc_root(tmp_path: Path, model_file: Path) -> Path:
    """A folder standing where the operator mounts claims: claim `models` holds iris/v1."""
    root = tmp_path / "pvc"
    (root / "models" / "iris" / "v1").mkdir(parents=True)
    (root / "models" / "iris" / "v1" / "model.joblib").write_bytes(model_file.read_bytes())
    (tmp_path / "outside.joblib").write_bytes(model_file.read_bytes())
    return root


def test_a_pvc_uri_reads_the_file_under_the_claims_mount(pvc_root: Path, model_file: Path) -> None:
    content = model_file.read_bytes()
    options = pinned(content, pvc_root=str(pvc_root))

    by_file = load_model("pvc://models/iris/v1/model.joblib", options)
    by_directory = load_model("pvc://models/iris/v1", options)

    assert by_file.sha256 == by_directory.sha256 == hashlib.sha256(content).hexdigest()
    assert by_file.source == "pvc://models/iris/v1/model.joblib"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pvc://models/../outside.joblib", "leads out of the claim's folder"),
        ("pvc://models/iris/../../outside.joblib", "leads out of the claim's folder"),
        ("pvc://models/%2E%2E/outside.joblib", "leads out of the claim's folder"),
        ("pvc://other/model.joblib", "the claim is not mounted at"),
        ("pvc://models", "pvc:// URIs name a claim and a path in it"),
        ("pvc://Models/iris/v1/model.joblib", "pvc:// URIs name a claim and a path in it"),
        ("pvc://models/iris/v1/missing.joblib", "no such file"),
    ],
)
def test_a_pvc_uri_outside_its_claim_or_misshapen_is_refused(pvc_root: Path, uri: str, message: str) -> None:
    with pytest.raises(LoadError, match=message):
        load_model(uri, LoadOptions(allow_unpinned_pickle=True, pvc_root=str(pvc_root)))


def test_a_symlink_out_of_the_claim_is_refused(pvc_root: Path) -> None:
    (pvc_root / "models" / "escape.joblib").symlink_to(pvc_root.parent / "outside.joblib")

    with pytest.raises(LoadError, match="leads out of the claim's folder"):
        load_model(
            "pvc://models/escape.joblib", LoadOptions(allow_unpinned_pickle=True, pvc_root=str(pvc_root))
        )


def test_a_pvc_file_larger_than_the_cap_is_refused(pvc_root: Path, model_file: Path) -> None:
    size = model_file.stat().st_size
    options = pinned(model_file.read_bytes(), pvc_root=str(pvc_root), max_bytes=size - 1)

    with pytest.raises(LoadError, match=f"larger than {size - 1} bytes"):
        load_model("pvc://models/iris/v1/model.joblib", options)


def test_the_pvc_root_is_a_setting() -> None:
    default = parse_settings(
        ["--model-uri", "pvc://c/m.skops", "--model-name", "m", "--model-version", "1"], {}
    )
    moved = parse_settings(
        ["--model-uri", "pvc://c/m.skops", "--model-name", "m", "--model-version", "1"],
        {"MODEL_PVC_ROOT": "/mnt/claims"},
    )

    assert default.pvc_root == "/var/lib/vigil/pvc"
    assert moved.pvc_root == "/mnt/claims"


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://models/iris/v1/model.joblib", "models", "iris/v1/model.joblib"),
        ("gs://my-bucket.example/model.skops", "my-bucket.example", "model.skops"),
    ],
)
def test_an_object_uri_names_a_bucket_and_a_key(uri: str, bucket: str, key: str) -> None:
    location = parse_object_uri(uri)

    assert (location.bucket, location.key, location.shown) == (bucket, key, uri)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://models", "name the object, not a bucket or a prefix"),
        ("s3://models/iris/", "name the object, not a bucket or a prefix"),
        ("gs://BAD_bucket/model.joblib", "is not a bucket name"),
        ("s3://models/model.joblib?versionId=3", "takes no query string"),
        ("s3://AKIA:secret@models/model.joblib", "credentials do not belong in the URI"),
        ("s3://models/model.onnx", "unsupported model format '.onnx'"),
    ],
)
def test_a_misshapen_object_uri_is_refused_before_any_request(uri: str, message: str) -> None:
    with pytest.raises(LoadError, match=message) as refused:
        load_model(uri, LoadOptions(allow_unpinned_pickle=True))

    assert "secret" not in str(refused.value)


def test_the_s3_settings_come_from_the_standard_aws_environment() -> None:
    config = _s3_config(
        {
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_REGION": "eu-central-1",
            "AWS_ENDPOINT_URL": "http://minio.storage:9000",
            "AWS_ENDPOINT_URL_S3": "http://s3.storage:9000",
            "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/model-reader",
            "HOME": "/tmp",
        }
    )

    assert config == {
        "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": SECRET,
        "region": "eu-central-1",
        "endpoint": "http://s3.storage:9000",
        "web_identity_token_file": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
        "role_arn": "arn:aws:iam::123456789012:role/model-reader",
    }


def test_a_storage_emulator_host_points_gcs_at_an_unauthenticated_emulator() -> None:
    assert _gcs_config({"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"}) == {
        "base_url": "http://127.0.0.1:4443",
        "skip_signature": True,
    }
    assert _gcs_config({"GOOGLE_APPLICATION_CREDENTIALS": "/var/run/gcp/key.json"}) == {
        "application_credentials": "/var/run/gcp/key.json"
    }


def test_scrub_removes_every_credential_value_and_keeps_one_short_line() -> None:
    environ = {"AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEBYaDH"}
    text = f"signature for {SECRET}\nwith token FwoGZXIvYXdzEBYaDH at http://u:p@h/x?sig=1 " + "x" * 1000

    scrubbed = scrub(text, environ)

    assert SECRET not in scrubbed
    assert "FwoGZXIvYXdzEBYaDH" not in scrubbed
    assert "u:p" not in scrubbed
    assert "sig=1" not in scrubbed
    assert "\n" not in scrubbed
    assert len(scrubbed) <= 400


# gs:// below: no GCS emulator can be built here, so these read through obstore's GCS client from
# the project's plain HTTP model store, which serves objects at the paths that client requests
# (/bucket/url-encoded-name). They check the loader's handling (cap, deadline, statuses), not
# Google's service.


def gcs_path(bucket: str, name: str) -> str:
    """The path obstore's GCS client requests for an object (the name's '/' and '.' encoded)."""
    return f"/{bucket}/" + name.replace(".", "%2E").replace("/", "%2F")


@pytest.fixture
def gcs() -> Iterator[ModelStore]:
    running = ModelStore().start()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"127.0.0.1:{running.port}"
    yield running
    running.stop()
    if previous is None:
        del os.environ["STORAGE_EMULATOR_HOST"]
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous


def test_a_gs_object_loads_and_its_checksum_is_checked(gcs: ModelStore, model_file: Path) -> None:
    content = model_file.read_bytes()
    gcs.files[gcs_path("models", "iris/v1/model.joblib")] = content

    loaded = load_model("gs://models/iris/v1/model.joblib", pinned(content))
    with pytest.raises(LoadError, match="sha256 mismatch"):
        load_model("gs://models/iris/v1/model.joblib", LoadOptions(sha256="0" * 64))

    assert loaded.source == "gs://models/iris/v1/model.joblib"


def test_a_missing_gs_object_or_a_refusal_is_final(gcs: ModelStore) -> None:
    gcs.files[gcs_path("models", "forbidden.joblib")] = b"x"
    gcs.failing[gcs_path("models", "forbidden.joblib")] = [403]
    options = LoadOptions(allow_unpinned_pickle=True, download_retry_seconds=60)

    with pytest.raises(LoadError, match=r"gs://models/missing\.joblib: no such object") as missing:
        load_model("gs://models/missing.joblib", options)
    with pytest.raises(LoadError, match=r"gs://models/forbidden\.joblib: access denied") as denied:
        load_model("gs://models/forbidden.joblib", options)

    assert not isinstance(missing.value, StoreUnavailable)
    assert not isinstance(denied.value, StoreUnavailable)


def test_a_gs_store_that_fails_for_a_while_is_retried(gcs: ModelStore, model_file: Path) -> None:
    content = model_file.read_bytes()
    path = gcs_path("models", "model.joblib")
    gcs.files[path] = content
    gcs.failing[path] = [503, 503]
    retries: list[str] = []

    load_model("gs://models/model.joblib", pinned(content), retries.append, sleep=lambda _: None)

    assert len(retries) == 2
    assert all(message.startswith("gs://models/model.joblib: download failed:") for message in retries)


def test_a_gs_object_past_the_cap_or_the_deadline_is_refused(gcs: ModelStore, model_file: Path) -> None:
    content = model_file.read_bytes()
    gcs.files[gcs_path("models", "big.joblib")] = content
    gcs.files[gcs_path("models", "slow.joblib")] = content
    gcs.drip_seconds[gcs_path("models", "slow.joblib")] = 0.05

    with pytest.raises(LoadError, match=f"larger than {len(content) - 1} bytes"):
        load_model("gs://models/big.joblib", pinned(content, max_bytes=len(content) - 1))
    started = time.monotonic()
    with pytest.raises(
        StoreUnavailable, match=r"did not finish within 1 s \(MODEL_DOWNLOAD_TIMEOUT_SECONDS\)"
    ):
        load_model(
            "gs://models/slow.joblib", pinned(content, download_timeout_seconds=1.0, download_retry_seconds=0)
        )

    assert time.monotonic() - started < 3


def test_read_object_refuses_a_declared_size_over_the_cap_before_reading(gcs: ModelStore) -> None:
    gcs.files[gcs_path("models", "huge.joblib")] = b"x" * 4096
    gcs.drip_seconds[gcs_path("models", "huge.joblib")] = 1.0  # reading it would take an hour

    started = time.monotonic()
    with pytest.raises(LoadError, match="larger than 100 bytes"):
        load_model("gs://models/huge.joblib", LoadOptions(allow_unpinned_pickle=True, max_bytes=100))

    assert time.monotonic() - started < 3
