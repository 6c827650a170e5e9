"""Shadow, with two real servers: the stable release mirrors what it answers into a candidate.

The candidate predicts every mirrored request under the stable's id and keeps the stable's
prediction beside its own; a label posted to the stable scores the stable, is forwarded, and scores
the candidate and the pair. Mirroring never slows or fails the stable's answers: a full queue
drops (counted), an unreachable candidate fails (counted).
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import pytest
from hypothesis import given
from hypothesis import strategies as st
from model_server_harness import MODEL_NAME, ModelServer, pinned, start_server
from test_model_server_fuzz import FUZZ, assert_answered_without_5xx, data, json_values, scalars

from harness.models import TrainedModel, iris, train
from harness.ports import free_port
from harness.processes import ProcessGroup
from harness.waiting import wait_for

STABLE, CANDIDATE = "3", "4"
TOKEN = "shadow-token"
MIRROR = f"/v2/models/{MODEL_NAME}/mirror"
FEEDBACK = f"/v2/models/{MODEL_NAME}/feedback"
INFER = f"/v2/models/{MODEL_NAME}/infer"
OUTCOMES = ("both_right", "both_wrong", "only_stable_right", "only_candidate_right")
SETOSA = [5.1, 3.5, 1.4, 0.2]


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def v2_body(rows: list[list[float]], request_id: str | None = None) -> dict[str, object]:
    tensor = {"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}
    return {"inputs": [tensor], **({"id": request_id} if request_id else {})}


def mirror_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "stable_version": STABLE,
        "ids": ["m-1"],
        "row_counts": [1],
        "instances": [SETOSA],
        "predictions": [0],
    }
    return {**body, **overrides}


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("feedback-secret") / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def candidate_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """A worse iris model (40% of its training labels shuffled), so the two versions disagree."""
    return train(tmp_path_factory.mktemp("candidate") / "model.joblib", shuffled_fraction=0.4, seed=5)


def start_candidate(processes: ProcessGroup, model: TrainedModel, *flags: str) -> ModelServer:
    argv = ("--model-version", CANDIDATE, "--sha256", model.sha256, "--max-infer-rows", "100", *flags)
    return start_server(processes, str(model.path), *argv).wait_ready()


def start_stable(processes: ProcessGroup, model_file: Path, mirror_url: str, *flags: str) -> ModelServer:
    argv = ("--mirror-url", mirror_url, *pinned(model_file), *flags)
    return start_server(processes, str(model_file), *argv).wait_ready()


@pytest.fixture(scope="module")
def candidate(module_processes: ProcessGroup, candidate_model: TrainedModel, token_file: Path) -> ModelServer:
    flags = ("--stable-version", STABLE, "--feedback-token-file", str(token_file))
    return start_candidate(module_processes, candidate_model, *flags)


@pytest.fixture(scope="module")
def stable(
    module_processes: ProcessGroup, iris_model_file: Path, candidate: ModelServer, token_file: Path
) -> ModelServer:
    url = f"http://127.0.0.1:{candidate.port}"
    return start_stable(module_processes, iris_model_file, url, "--feedback-token-file", str(token_file))


def paired(candidate: ModelServer) -> dict[str, float]:
    """The candidate's paired counts by outcome."""
    return {
        outcome: candidate.metric(
            "vigil_model_paired_feedback_total", version=CANDIDATE, stable_version=STABLE, outcome=outcome
        )
        or 0.0
        for outcome in OUTCOMES
    }


def mirrored(stable: ModelServer, kind: str, result: str) -> float | None:
    return stable.metric("vigil_model_mirror_total", kind=kind, result=result)


def requests(server: ModelServer, endpoint: str, code: str = "200", version: str = CANDIDATE) -> float:
    return server.metric("vigil_model_requests_total", version=version, endpoint=endpoint, code=code) or 0.0


def outcome(candidate_right: bool, stable_right: bool) -> str:
    """The paired outcome of one labelled row, as the operator's query reads it."""
    if candidate_right == stable_right:
        return "both_right" if candidate_right else "both_wrong"
    return "only_candidate_right" if candidate_right else "only_stable_right"


def test_both_servers_expose_their_shadow_counters_at_zero_from_the_start(
    processes: ProcessGroup, iris_model_file: Path, candidate_model: TrainedModel
) -> None:
    fresh = start_candidate(processes, candidate_model, "--stable-version", STABLE)
    stable = start_stable(processes, iris_model_file, f"http://127.0.0.1:{fresh.port}")

    for name in OUTCOMES:
        labels = {"version": CANDIDATE, "stable_version": STABLE, "outcome": name}
        assert fresh.metric("vigil_model_paired_feedback_total", **labels) == 0.0, name
    for kind in ("predictions", "labels"):
        for result in ("sent", "dropped", "failed"):
            assert mirrored(stable, kind, result) == 0.0, (kind, result)
    assert "vigil_model_mirror_total" not in fresh.client.get("/metrics").text
    assert "vigil_model_paired_feedback_total" not in stable.client.get("/metrics").text


def test_answers_are_mirrored_under_their_ids_and_a_label_scores_both_versions(
    stable: ModelServer, candidate: ModelServer, candidate_model: TrainedModel
) -> None:
    features, truth = iris()
    sent_before = mirrored(stable, "predictions", "sent") or 0
    labels_before = mirrored(stable, "labels", "sent") or 0
    paired_before = paired(candidate)
    chosen = list(range(0, 150, 5))  # 30 rows of all three classes
    stable_predictions: dict[str, list[int]] = {}
    rows_of: dict[str, list[int]] = {}
    for n, start in enumerate(range(0, len(chosen), 3)):
        indices = chosen[start : start + 3]
        rows = features[indices].tolist()
        if n % 3 == 0:  # V2, the server's own id
            answer = stable.client.post(INFER, json=v2_body(rows)).json()
            response_id, predicted = answer["id"], answer["outputs"][0]["data"]
        elif n % 3 == 1:  # V2 versioned, the client's id
            path = f"/v2/models/{MODEL_NAME}/versions/{STABLE}/infer"
            answer = stable.client.post(path, json=v2_body(rows, f"client-{n}")).json()
            response_id, predicted = answer["id"], answer["outputs"][0]["data"]
            assert response_id == f"client-{n}"
        else:  # KServe V1
            answer = stable.client.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": rows}).json()
            response_id, predicted = answer["id"], answer["predictions"]
        stable_predictions[response_id], rows_of[response_id] = predicted, indices
    wait_for(
        lambda: mirrored(stable, "predictions", "sent") == sent_before + 10,
        timeout=10,
        interval=0.05,
        what="the 10 answers to be mirrored",
    )
    before = candidate.metric("vigil_model_feedback_total", version=CANDIDATE)

    # The labels: the true class, except every fourth row, given another class.
    labels_of = {
        response_id: [int(truth[i]) if i % 4 else int(truth[i] + 1) % 3 for i in indices]
        for response_id, indices in rows_of.items()
    }
    for response_id, labels in labels_of.items():
        answer = stable.client.post(FEEDBACK, json={"id": response_id, "labels": labels}, headers=bearer())
        assert answer.status_code == 200, answer.text

    # By hand: the candidate's own predictions of the same rows, against the stable's and the labels.
    model = joblib.load(candidate_model.path)
    expected: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
    for response_id, indices in rows_of.items():
        own = model.predict(features[indices])
        for candidate_says, stable_says, label in zip(
            own, stable_predictions[response_id], labels_of[response_id], strict=True
        ):
            expected[outcome(bool(candidate_says == label), stable_says == label)] += 1
    assert expected["only_stable_right"] > 0
    assert expected["both_right"] > 0

    def counted() -> dict[str, float]:
        return {name: count - paired_before[name] for name, count in paired(candidate).items()}

    wait_for(lambda: sum(counted().values()) == 30, timeout=10, interval=0.05, what="30 paired labels")
    assert counted() == {name: float(count) for name, count in expected.items()}
    assert candidate.metric("vigil_model_feedback_total", version=CANDIDATE) == (before or 0) + 30
    assert mirrored(stable, "labels", "sent") == labels_before + 10
    # No user request was answered by the candidate: its inference endpoints never counted one.
    metrics_text = candidate.client.get("/metrics").text
    assert 'endpoint="infer"' not in metrics_text
    assert 'endpoint="v1_predict"' not in metrics_text
    assert requests(candidate, "mirror") >= 1


def test_rows_labelled_on_arrival_are_paired_too(stable: ModelServer, candidate: ModelServer) -> None:
    before = paired(candidate)
    answer = stable.client.post(
        FEEDBACK, json={"instances": [SETOSA, SETOSA], "labels": [0, 0]}, headers=bearer()
    )
    assert answer.status_code == 200

    wait_for(
        lambda: paired(candidate)["both_right"] == before["both_right"] + 2,
        timeout=10,
        interval=0.05,
        what="the two rows labelled at the stable to be paired at the candidate",
    )


def test_a_small_queue_is_posted_when_half_full_not_dropped(
    processes: ProcessGroup, iris_model_file: Path, candidate: ModelServer, token_file: Path
) -> None:
    url = f"http://127.0.0.1:{candidate.port}"
    flags = ("--mirror-queue-size", "64", "--feedback-token-file", str(token_file))
    stable = start_stable(processes, iris_model_file, url, *flags)

    for _ in range(300):  # far more than 64 rows within the 250 ms a post may wait for more
        assert stable.client.post(INFER, json=v2_body([SETOSA])).status_code == 200

    wait_for(
        lambda: mirrored(stable, "predictions", "sent") == 300,
        timeout=10,
        interval=0.05,
        what="all 300 copies to be sent",
    )
    assert mirrored(stable, "predictions", "dropped") == 0


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers: a hung candidate."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(256)
        yield listener.getsockname()[1]


def test_a_full_queue_drops_and_counts_copies_and_never_holds_up_an_answer(
    processes: ProcessGroup, iris_model_file: Path, silent_port: int
) -> None:
    flags = ("--mirror-queue-size", "4", "--mirror-timeout-seconds", "2")
    stable = start_stable(processes, iris_model_file, f"http://127.0.0.1:{silent_port}", *flags)

    slowest = 0.0
    for _ in range(60):
        started = time.perf_counter()
        answer = stable.client.post(INFER, json=v2_body([SETOSA]))
        slowest = max(slowest, time.perf_counter() - started)
        assert answer.status_code == 200
    labelled = stable.client.post(FEEDBACK, json={"id": answer.json()["id"], "labels": [0]})

    assert labelled.status_code == 200
    assert slowest < 1.0  # far below the 2 s a hung post waits
    assert mirrored(stable, "predictions", "dropped") > 0
    wait_for(
        lambda: (
            sum(mirrored(stable, "predictions", result) or 0 for result in ("sent", "dropped", "failed"))
            == 60
        ),
        timeout=20,
        interval=0.1,
        what="every copy to be counted sent, dropped or failed",
    )
    assert mirrored(stable, "predictions", "sent") == 0


def test_an_unreachable_candidate_counts_failures_and_the_stable_answers_as_ever(
    processes: ProcessGroup, iris_model_file: Path
) -> None:
    stable = start_stable(processes, iris_model_file, f"http://127.0.0.1:{free_port()}")

    answers = [stable.client.post(INFER, json=v2_body([SETOSA])) for _ in range(20)]
    labelled = stable.client.post(FEEDBACK, json={"id": answers[-1].json()["id"], "labels": [0]})

    assert [answer.status_code for answer in answers] == [200] * 20
    assert all(answer.json()["outputs"][0]["data"] == [0] for answer in answers)
    assert labelled.status_code == 200
    wait_for(
        lambda: (mirrored(stable, "predictions", "failed"), mirrored(stable, "labels", "failed")) == (20, 1),
        timeout=10,
        interval=0.05,
        what="20 failed prediction copies and 1 failed label",
    )
    assert "mirroring failed (counted in vigil_model_mirror_total)" in stable.process.log()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (mirror_body(stable_version="2"), 409, "paired with stable version '3' (STABLE_VERSION), not '2'"),
        ({"ids": ["a"]}, 400, "a mirror request is a JSON object like"),
        (mirror_body(ids="m-1"), 400, '"ids" must be a non-empty list'),
        (mirror_body(ids=[""]), 400, "a string of 1 to 256 characters"),
        (mirror_body(ids=["x" * 257]), 400, "a string of 1 to 256 characters"),
        (mirror_body(row_counts=[0]), 400, "at least 1"),
        (mirror_body(row_counts=[1, 1]), 400, "one number of rows per id"),
        (mirror_body(row_counts=[2]), 422, 'add up to 2 rows but "instances" has 1'),
        (mirror_body(instances=[[1.0, 2.0]]), 422, "each row needs 4 features, got 2"),
        (mirror_body(instances=[["a", "b", "c", "d"]]), 422, "must hold numbers"),
        (mirror_body(predictions=[0, 1]), 422, '"predictions" has 2 prediction(s) for 1 row(s)'),
        (mirror_body(predictions=[None]), 422, "null, true and false are never predictions"),
        (mirror_body(predictions=["setosa"]), 422, "predictions are numbers"),
        (mirror_body(predictions=0), 422, "flat list"),
        (
            mirror_body(ids=["big"], row_counts=[101], instances=[SETOSA] * 101, predictions=[0] * 101),
            413,
            "the mirror request has 101 rows; the limit is 100 (MODEL_MAX_INFER_ROWS)",
        ),
        (b"[" * 5_000_000, 413, "MAX_BODY_BYTES"),
    ],
)
def test_hostile_mirror_payloads_get_a_4xx_with_a_message(
    candidate: ModelServer, body: object, status: int, message: str
) -> None:
    before = candidate.metric("vigil_model_predictions_total", version=CANDIDATE)
    headers = {**bearer(), "content-type": "application/json"}
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content

    answer = candidate.client.post(MIRROR, content=content, headers=headers)

    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert candidate.metric("vigil_model_predictions_total", version=CANDIDATE) == before


def test_a_known_id_is_left_as_it_is(candidate: ModelServer) -> None:
    first = candidate.client.post(MIRROR, json=mirror_body(ids=["same"]), headers=bearer())
    again = candidate.client.post(MIRROR, json=mirror_body(ids=["same"], predictions=[2]), headers=bearer())

    assert (first.json()["recorded"], again.json()["recorded"], again.json()["known"]) == (1, 0, 1)


def test_mirrored_requests_need_the_token(candidate: ModelServer) -> None:
    missing = candidate.client.post(MIRROR, json=mirror_body())
    wrong = candidate.client.post(MIRROR, json=mirror_body(), headers=bearer("guess"))

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")


def test_a_candidate_without_a_token_file_refuses_every_mirrored_request(
    processes: ProcessGroup, candidate_model: TrainedModel
) -> None:
    candidate = start_candidate(processes, candidate_model, "--stable-version", STABLE)

    answer = candidate.client.post(MIRROR, json=mirror_body(), headers=bearer())

    assert answer.status_code == 403
    assert "set --feedback-token-file (MODEL_FEEDBACK_TOKEN_FILE)" in answer.json()["error"]
    assert "shadow candidate without a feedback token" in candidate.process.log()


def test_a_server_that_is_not_a_candidate_has_no_mirror_endpoint(iris_server: ModelServer) -> None:
    answer = iris_server.client.post(MIRROR, json=mirror_body(), headers=bearer())

    assert answer.status_code == 404
    assert "not a shadow candidate (it has no STABLE_VERSION)" in answer.json()["error"]


mirror_documents = st.fixed_dictionaries(
    {},
    optional={
        "stable_version": st.one_of(st.just(STABLE), json_values),
        "ids": st.one_of(st.lists(st.text(max_size=300), max_size=4), json_values),
        "row_counts": st.one_of(st.lists(st.integers(-1, 3), max_size=4), json_values),
        "instances": data,
        "predictions": st.one_of(st.lists(st.one_of(st.integers(-1, 3), scalars), max_size=6), json_values),
    },
)


@FUZZ
@given(document=st.one_of(mirror_documents, json_values))
def test_fuzzed_mirror_documents_get_an_answer_or_a_4xx(candidate: ModelServer, document: object) -> None:
    headers = {**bearer(), "content-type": "application/json"}

    assert_answered_without_5xx(candidate.client.post(MIRROR, json=document, headers=headers))
