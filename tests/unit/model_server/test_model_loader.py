"""Loading: where a model comes from, the checksum before deserialising, downloads, every refusal."""

import contextlib
import gzip
import hashlib
import operator
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from harness.model_store import ModelStore
from vigil_model_server import loader
from vigil_model_server.loader import LoadError, LoadOptions, StoreUnavailable, load_model
from vigil_model_server.redaction import redact_text, redact_uri

UNPINNED_PICKLES = LoadOptions(allow_unpinned_pickle=True)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pinned(content: bytes, **options: object) -> LoadOptions:
    return LoadOptions(sha256=hashlib.sha256(content).hexdigest(), **options)  # type: ignore[arg-type]


class RunsCodeWhenUnpickled:
    """Unpickling this creates the file `marker`: what a malicious model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))


@pytest.fixture
def store() -> Iterator[ModelStore]:
    """A real HTTP model store on 127.0.0.1."""
    running = ModelStore().start()
    yield running
    running.stop()


@pytest.fixture
def model_bytes(model_file: Path) -> bytes:
    return model_file.read_bytes()


@pytest.mark.parametrize("form", ["path", "file-uri", "directory"])
def test_a_joblib_model_loads_from_a_path_a_file_uri_or_its_directory(
    form: str, model_file: Path, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    uri = {"path": str(model_file), "file-uri": model_file.as_uri(), "directory": str(model_file.parent)}[
        form
    ]

    model = load_model(uri, LoadOptions(sha256=sha256_of(model_file)))

    assert (model.format, model.sha256) == ("joblib", sha256_of(model_file))
    features, labels = iris
    assert (model.estimator.predict(features) == labels).mean() > 0.9


def test_a_model_loads_over_http_and_its_checksum_is_checked(store: ModelStore, model_bytes: bytes) -> None:
    store.files["/model.joblib"] = model_bytes

    model = load_model(f"{store.url}/model.joblib", pinned(model_bytes))

    assert model.estimator.n_features_in_ == 4
    with pytest.raises(LoadError, match="sha256 mismatch"):
        load_model(f"{store.url}/model.joblib", LoadOptions(sha256="0" * 64))


def test_a_final_http_error_is_not_retried(store: ModelStore) -> None:
    with pytest.raises(LoadError, match="download failed: HTTP 404") as refused:
        load_model(f"{store.url}/missing.joblib", UNPINNED_PICKLES)

    assert not isinstance(refused.value, StoreUnavailable)
    assert store.requests == ["/missing.joblib"]


def test_the_checksum_is_compared_before_anything_is_deserialised(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.joblib"
    joblib.dump(RunsCodeWhenUnpickled(marker), path)

    with pytest.raises(LoadError, match=f"sha256 mismatch: expected {'a' * 64}, file has {sha256_of(path)}"):
        load_model(str(path), LoadOptions(sha256="a" * 64))

    assert not marker.exists()


def test_the_bytes_that_were_hashed_are_the_bytes_deserialised(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file swapped between the checksum and the load cannot run: nothing is re-opened by path."""
    marker = tmp_path / "code-ran"
    malicious = tmp_path / "malicious.joblib"
    joblib.dump(RunsCodeWhenUnpickled(marker), malicious)
    hash_bytes = loader._sha256_hex

    def swap_the_file_then_hash(content: bytes) -> str:
        malicious.replace(model_file)  # the attacker wins the race: the path now holds their pickle
        return hash_bytes(content)

    monkeypatch.setattr(loader, "_sha256_hex", swap_the_file_then_hash)
    expected = sha256_of(model_file)

    model = load_model(str(model_file), LoadOptions(sha256=expected))

    assert model.estimator.n_features_in_ == 4
    assert not marker.exists()
    assert sha256_of(model_file) != expected  # the swap did happen


@pytest.mark.parametrize("where", ["file", "http"])
def test_an_unpinned_pickle_is_refused_before_it_is_read_unless_allowed(
    where: str, tmp_path: Path, store: ModelStore, model_bytes: bytes
) -> None:
    marker = tmp_path / "code-ran"
    malicious = tmp_path / "model.joblib"
    joblib.dump(RunsCodeWhenUnpickled(marker), malicious)
    store.files["/model.joblib"] = model_bytes
    uri = str(malicious) if where == "file" else f"{store.url}/model.joblib"

    with pytest.raises(LoadError, match=r"runs code from it, so it needs its sha256 \(--sha256"):
        load_model(uri)

    assert not marker.exists()
    assert store.requests == []
    if where == "http":
        assert load_model(uri, UNPINNED_PICKLES).estimator.n_features_in_ == 4


def test_a_skops_model_with_only_trusted_types_loads_unpinned(
    tmp_path: Path, classifier: LogisticRegression
) -> None:
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
    trusted = LoadOptions(skops_trusted=("_operator.neg",))
    assert load_model(str(path), trusted).estimator.n_features_in_ == 4


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
        load_model(str(tmp_path / file_name), UNPINNED_PICKLES)


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
        load_model(str(tmp_path / "model.joblib"), UNPINNED_PICKLES)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/nonexistent/model.joblib", "no such file"),
        ("hf://org/model.joblib", "unsupported URI scheme 'hf://'"),
        ("file://otherhost/model.joblib", "must name a local file"),
    ],
)
def test_a_uri_that_names_no_local_or_http_file_is_refused(uri: str, message: str) -> None:
    with pytest.raises(LoadError, match=message):
        load_model(uri)


def test_a_directory_without_a_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"directory has no model file; expected one of model\.joblib"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-content-length"])
def test_a_download_larger_than_the_cap_is_refused(
    store: ModelStore, model_bytes: bytes, declared: bool
) -> None:
    store.files["/model.joblib"] = model_bytes
    if not declared:
        store.undeclared_length.add("/model.joblib")
    options = pinned(model_bytes, max_bytes=len(model_bytes) - 1)

    with pytest.raises(LoadError, match=f"larger than {len(model_bytes) - 1} bytes \\(MODEL_MAX_BYTES\\)"):
        load_model(f"{store.url}/model.joblib", options)

    assert load_model(f"{store.url}/model.joblib", pinned(model_bytes, max_bytes=len(model_bytes)))


def test_a_local_file_larger_than_the_cap_is_refused(model_file: Path) -> None:
    size = model_file.stat().st_size

    with pytest.raises(LoadError, match=f"larger than {size - 1} bytes"):
        load_model(str(model_file), LoadOptions(sha256=sha256_of(model_file), max_bytes=size - 1))


def test_the_download_deadline_covers_the_whole_transfer(store: ModelStore, model_bytes: bytes) -> None:
    """A store that sends a byte every 50 ms answers every read quickly, yet fails at the deadline."""
    store.files["/model.joblib"] = model_bytes
    store.drip_seconds["/model.joblib"] = 0.05
    options = pinned(model_bytes, download_timeout_seconds=1.0, download_retry_seconds=0)

    started = time.monotonic()
    with pytest.raises(
        StoreUnavailable, match=r"did not finish within 1 s \(MODEL_DOWNLOAD_TIMEOUT_SECONDS\)"
    ):
        load_model(f"{store.url}/model.joblib", options)

    assert 1.0 <= time.monotonic() - started < 2.5


def _raw_store(answer: Callable[[socket.socket], None]) -> tuple[str, threading.Event]:
    """A one-connection store on 127.0.0.1 that answers with `answer` (raw bytes, any pace)."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        with listener:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                with contextlib.suppress(OSError):
                    answer(connection)
                done.wait(10)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/model.joblib", done


def test_the_download_deadline_covers_a_store_that_drips_its_headers(model_bytes: bytes) -> None:
    """Every header line comes quickly, the head never ends: the deadline still holds."""

    def drip_headers(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\n")
        for number in range(100):
            connection.sendall(f"x-drip-{number}: 1\r\n".encode())
            time.sleep(0.1)

    url, done = _raw_store(drip_headers)
    options = pinned(model_bytes, download_timeout_seconds=1.0, download_retry_seconds=0)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable, match=r"did not finish within 1 s"):
            load_model(url, options)
    finally:
        done.set()
    assert time.monotonic() - started < 5  # the drip lasts 10 s


def test_a_compressed_answer_is_refused_before_it_is_decompressed(model_bytes: bytes) -> None:
    """A few kB of gzip can be gigabytes of zeros; only uncompressed files are read."""
    bomb = gzip.compress(b"\0" * 5_000_000)

    def gzipped(connection: socket.socket) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
        connection.sendall(head.encode() + bomb)

    url, done = _raw_store(gzipped)
    try:
        with pytest.raises(LoadError, match="'gzip'-encoded; only uncompressed files are read"):
            load_model(url, pinned(model_bytes, download_retry_seconds=0))
    finally:
        done.set()


def test_a_store_that_fails_for_a_while_is_retried_with_backoff(
    store: ModelStore, model_bytes: bytes
) -> None:
    store.files["/model.joblib"] = model_bytes
    store.failing["/model.joblib"] = [503, 502, 500]
    notes: list[str] = []
    waits: list[float] = []

    model = load_model(f"{store.url}/model.joblib", pinned(model_bytes), notes.append, waits.append)

    assert model.estimator.n_features_in_ == 4
    assert store.requests == ["/model.joblib"] * 4
    assert [note.split("; ")[0] for note in notes] == [
        f"{store.url}/model.joblib: download failed: HTTP {status}" for status in (503, 502, 500)
    ]
    # Exponential with jitter: each wait in [ceiling / 2, ceiling] for ceilings 0.5, 1, 2.
    assert [ceiling / 2 <= wait <= ceiling for wait, ceiling in zip(waits, [0.5, 1, 2], strict=True)] == [
        True
    ] * 3


def test_retries_stop_after_the_retry_time_with_store_unavailable() -> None:
    nothing_listens = f"http://127.0.0.1:{ModelStore().port}/model.joblib"
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    options = LoadOptions(allow_unpinned_pickle=True, download_retry_seconds=1.5)
    with pytest.raises(StoreUnavailable, match=r"gave up after \d attempt\(s\) in \d+ s") as gave_up:
        load_model(nothing_listens, options, sleep=sleep)

    assert "download failed" in str(gave_up.value)
    assert len(waits) >= 1
    # The loader never waits past its retry time: its own waits fit in it (the wall clock also
    # counts connection attempts, which a busy machine stretches).
    assert sum(waits) <= 1.5


@pytest.mark.parametrize(
    ("target_scheme", "refused"), [("http", True), ("https", False)], ids=["to-http", "to-https"]
)
def test_an_https_download_never_follows_a_redirect_to_http(
    tmp_path: Path, model_bytes: bytes, monkeypatch: pytest.MonkeyPatch, target_scheme: str, refused: bool
) -> None:
    """A real TLS store redirects; going on over plain http would let anyone on the path swap the file."""
    plain, tls = ModelStore().start(), ModelStore(certificate_dir=tmp_path / "tls").start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(tls.certificate))
        plain.files["/model.joblib"] = tls.files["/model.joblib"] = model_bytes
        target = plain.url if target_scheme == "http" else tls.url
        tls.redirects["/moved.joblib"] = f"{target}/model.joblib?X-Amz-Signature=s3cr3t"
        uri = f"{tls.url}/moved.joblib"

        if refused:
            with pytest.raises(LoadError, match=r"refusing a redirect from https to http://") as error:
                load_model(uri, UNPINNED_PICKLES)
            assert not isinstance(error.value, StoreUnavailable)
            assert "s3cr3t" not in str(error.value)
            assert plain.requests == []
        else:
            assert load_model(uri, UNPINNED_PICKLES).estimator.n_features_in_ == 4
    finally:
        plain.stop()
        tls.stop()


def test_a_plain_http_redirect_within_http_is_followed(store: ModelStore, model_bytes: bytes) -> None:
    store.files["/model.joblib"] = model_bytes
    store.redirects["/latest.joblib"] = "/model.joblib"

    assert (
        load_model(f"{store.url}/latest.joblib", pinned(model_bytes)).sha256
        == hashlib.sha256(model_bytes).hexdigest()
    )


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (
            "https://user:hunter2@models.example.com:8443/iris/model.joblib?X-Amz-Signature=s3cr3t&b=1#frag",
            "https://***@models.example.com:8443/iris/model.joblib?***#***",
        ),
        ("http://models.example.com/iris/model.joblib", "http://models.example.com/iris/model.joblib"),
        ("file:///models/iris/model.joblib", "file:///models/iris/model.joblib"),
        ("/models/iris/model.joblib", "/models/iris/model.joblib"),
    ],
)
def test_redact_uri_removes_userinfo_query_and_fragment(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown
    assert redact_text(f"GET {uri} failed") == f"GET {shown} failed"


def test_no_error_message_shows_the_credentials_of_the_uri(store: ModelStore, model_bytes: bytes) -> None:
    secret_uri = f"http://reader:hunter2@127.0.0.1:{store.port}/missing.joblib?X-Amz-Signature=s3cr3t"
    store.files["/model.joblib"] = model_bytes

    with pytest.raises(LoadError) as missing:
        load_model(secret_uri, UNPINNED_PICKLES)
    with pytest.raises(LoadError) as unpinned:
        load_model(secret_uri.replace("missing", "model"))
    loaded = load_model(secret_uri.replace("missing", "model"), pinned(model_bytes))

    for shown in (str(missing.value), str(unpinned.value), loaded.source):
        assert "hunter2" not in shown
        assert "s3cr3t" not in shown
        assert f"http://***@127.0.0.1:{store.port}/" in shown


def test_the_loader_speaks_http_through_httpx() -> None:
    """The server's one HTTP client (pyproject): no second client to configure, patch or audit."""
    assert loader.httpx is httpx
