"""Health probes are answered while large requests keep a 300-tree forest busy (issue 13, finding 3)."""

from __future__ import annotations

import threading
import time

import httpx
import joblib
import numpy as np
import pytest
from model_server_harness import MODEL_NAME, ModelServer, pinned, start_server
from sklearn.ensemble import RandomForestClassifier

from harness.processes import ProcessGroup

PROBE_TIMEOUT = 5.0  # the probes' timeoutSeconds
ROWS_PER_REQUEST, FEATURES = 10_000, 20  # the default MODEL_MAX_INFER_ROWS


@pytest.fixture(scope="module")
def forest_server(
    module_processes: ProcessGroup, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModelServer, np.ndarray]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, FEATURES))
    labels = (features[:, 0] + rng.normal(size=2000) > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=300, random_state=0).fit(features, labels)
    path = tmp_path_factory.mktemp("forest") / "model.joblib"
    joblib.dump(forest, path)
    server = start_server(module_processes, str(path), *pinned(path)).wait_ready()
    return server, rng.normal(size=(ROWS_PER_REQUEST, FEATURES))


def test_liveness_answers_within_the_probe_timeout_while_two_clients_send_large_batches(
    forest_server: tuple[ModelServer, np.ndarray],
) -> None:
    server, rows = forest_server
    body = {
        "inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}]
    }
    answered: list[tuple[float, float]] = []  # (started, finished) of each large request
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=120) as http:
            while not stop.is_set():
                started = time.monotonic()
                response = http.post(f"/v2/models/{MODEL_NAME}/infer", json=body)
                assert response.status_code == 200, response.text
                answered.append((started, time.monotonic()))

    clients = [threading.Thread(target=client, daemon=True) for _ in range(2)]
    for thread in clients:
        thread.start()
    probes: list[tuple[float, float, int]] = []  # (sent, seconds, status)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=PROBE_TIMEOUT) as probe:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline or len(answered) < 4:
            sent = time.monotonic()
            status = probe.get("/v2/health/live").status_code  # a timeout raises: the probe failed
            probes.append((sent, time.monotonic() - sent, status))
            time.sleep(0.2)
    stop.set()
    for thread in clients:
        thread.join(timeout=120)

    during = [seconds for sent, seconds, _ in probes if any(start < sent < end for start, end in answered)]
    slowest = max(seconds for _, seconds, _ in probes)
    longest_request = max(end - start for start, end in answered)
    print(
        f"\n{len(probes)} liveness probes, {len(during)} during a large prediction; slowest "
        f"{slowest * 1000:.1f} ms, median during {np.median(during) * 1000:.1f} ms; "
        f"{len(answered)} requests of {ROWS_PER_REQUEST} rows, longest {longest_request:.2f} s"
    )
    assert {status for _, _, status in probes} == {200}
    assert len(during) >= 10  # the probes did overlap the predictions
    assert slowest < PROBE_TIMEOUT
