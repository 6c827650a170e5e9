"""Loading: where a model comes from, the checksum before deserialising, and every refusal."""

import functools
import hashlib
import http.server
import operator
import threading
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from vigil_model_server.loader import LoadError, load_model


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class RunsCodeWhenUnpickled:
    """Unpickling this creates the file `marker`: what a malicious model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))


@pytest.fixture
def served_directory(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1 (a real server in a thread), and its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("form", ["path", "file-uri", "directory"])
def test_a_joblib_model_loads_from_a_path_a_file_uri_or_its_directory(
    form: str, model_file: Path, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    uri = {"path": str(model_file), "file-uri": model_file.as_uri(), "directory": str(model_file.parent)}[
        form
    ]

    model = load_model(uri)

    assert (model.format, model.sha256) == ("joblib", sha256_of(model_file))
    features, labels = iris
    assert (model.estimator.predict(features) == labels).mean() > 0.9


def test_a_model_loads_over_http_and_its_checksum_is_checked(
    served_directory: tuple[Path, str], classifier: LogisticRegression
) -> None:
    directory, base_url = served_directory
    joblib.dump(classifier, directory / "model.joblib")

    model = load_model(f"{base_url}/model.joblib", sha256_of(directory / "model.joblib"))

    assert model.estimator.n_features_in_ == 4
    with pytest.raises(LoadError, match="sha256 mismatch"):
        load_model(f"{base_url}/model.joblib", "0" * 64)


def test_a_failed_download_says_which_status_came_back(served_directory: tuple[Path, str]) -> None:
    _, base_url = served_directory

    with pytest.raises(LoadError, match="download failed: HTTP 404"):
        load_model(f"{base_url}/missing.joblib")


def test_the_checksum_is_compared_before_anything_is_deserialised(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.joblib"
    joblib.dump(RunsCodeWhenUnpickled(marker), path)

    with pytest.raises(LoadError, match=f"sha256 mismatch: expected {'a' * 64}, file has {sha256_of(path)}"):
        load_model(str(path), "a" * 64)

    assert not marker.exists()


def test_a_skops_model_with_only_trusted_types_loads(tmp_path: Path, classifier: LogisticRegression) -> None:
    path = tmp_path / "model.skops"
    skops.io.dump(classifier, path)

    model = load_model(str(path))

    assert model.format == "skops"
    np.testing.assert_array_equal(model.estimator.coef_, classifier.coef_)


def test_a_skops_model_with_untrusted_types_is_refused_unless_they_are_listed(
    tmp_path: Path, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    pipeline = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression(max_iter=1000)).fit(*iris)
    path = tmp_path / "model.skops"
    skops.io.dump(pipeline, path)

    with pytest.raises(LoadError, match=r"types that are not trusted: _operator\.neg"):
        load_model(str(path))
    assert load_model(str(path), skops_trusted=("_operator.neg",)).estimator.n_features_in_ == 4


@pytest.mark.parametrize(
    ("file_name", "content", "message"),
    [
        ("model.onnx", b"\x08\x07", "unsupported model format '.onnx'"),
        ("model.joblib", b"not a pickle", "not a readable joblib file"),
        ("model.skops", b"not a zip archive", "not a readable skops file"),
    ],
)
def test_an_unreadable_or_unsupported_file_is_refused(
    tmp_path: Path, file_name: str, content: bytes, message: str
) -> None:
    (tmp_path / file_name).write_bytes(content)

    with pytest.raises(LoadError, match=message):
        load_model(str(tmp_path / file_name))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"weights": [1, 2, 3]}, "holds a dict, not an estimator with predict()"),
        (LogisticRegression(), "the LogisticRegression is not fitted"),
    ],
)
def test_something_that_cannot_predict_is_refused(tmp_path: Path, payload: object, message: str) -> None:
    joblib.dump(payload, tmp_path / "model.joblib")

    with pytest.raises(LoadError, match=message):
        load_model(str(tmp_path / "model.joblib"))


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/nonexistent/model.joblib", "no such file"),
        ("s3://bucket/model.joblib", "unsupported URI scheme 's3://'"),
        ("file://otherhost/model.joblib", "must name a local file"),
    ],
)
def test_a_uri_that_names_no_local_or_http_file_is_refused(uri: str, message: str) -> None:
    with pytest.raises(LoadError, match=message):
        load_model(uri)


def test_a_directory_without_a_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"directory has no model file; expected one of model\.joblib"):
        load_model(str(tmp_path))
