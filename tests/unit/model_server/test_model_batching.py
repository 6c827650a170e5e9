"""The micro-batcher: concurrent requests share predict calls, each gets its own rows' answers."""

import asyncio

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from vigil_model_server.batching import MicroBatcher
from vigil_model_server.errors import ApiError


class RecordingPredict:
    """The classifier's predict, noting the number of rows of each call."""

    def __init__(self, classifier: LogisticRegression) -> None:
        self.classifier = classifier
        self.calls: list[int] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.calls.append(len(rows))
        if (rows < 0).any():
            raise ValueError("negative measurements")
        return self.classifier.predict(rows)


async def submit_all(batcher: MicroBatcher, requests: list[np.ndarray]) -> list[object]:
    return await asyncio.gather(*(batcher.submit(rows) for rows in requests), return_exceptions=True)


def test_concurrent_requests_share_one_predict_call_and_get_their_own_answers(
    classifier: LogisticRegression, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    features, _ = iris
    predict = RecordingPredict(classifier)
    batcher = MicroBatcher(predict, max_rows=64, max_wait=3600)
    requests = [features[i : i + 1 + i % 3] for i in range(0, 150, 15)]

    answers = asyncio.run(submit_all(batcher, requests))

    assert predict.calls == [sum(len(rows) for rows in requests)]
    for rows, answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer, classifier.predict(rows))


def test_a_batch_closes_when_it_holds_max_rows(classifier: LogisticRegression) -> None:
    predict = RecordingPredict(classifier)
    batcher = MicroBatcher(predict, max_rows=4, max_wait=3600)

    asyncio.run(submit_all(batcher, [np.ones((1, 4))] * 10))

    assert predict.calls == [4, 4, 2]


def test_with_max_rows_one_every_request_is_predicted_alone(classifier: LogisticRegression) -> None:
    predict = RecordingPredict(classifier)
    batcher = MicroBatcher(predict, max_rows=1, max_wait=3600)

    asyncio.run(submit_all(batcher, [np.ones((1, 4))] * 3))

    assert predict.calls == [1, 1, 1]


def test_a_lone_request_does_not_wait_for_max_wait(classifier: LogisticRegression) -> None:
    batcher = MicroBatcher(RecordingPredict(classifier), max_rows=64, max_wait=3600)

    # The bound only turns a hang into a failure; the batch closes after one quiet loop turn.
    answer = asyncio.run(asyncio.wait_for(batcher.submit(np.ones((1, 4))), timeout=30))

    assert answer.shape == (1,)


def test_rows_the_model_refuses_fail_only_their_own_request(classifier: LogisticRegression) -> None:
    predict = RecordingPredict(classifier)
    batches: list[int] = []
    batcher = MicroBatcher(predict, max_rows=64, max_wait=3600, on_batch=batches.append)
    good, bad = np.ones((1, 4)), -np.ones((2, 4))

    answers = asyncio.run(submit_all(batcher, [good, bad, good]))

    assert predict.calls == [4, 1, 2, 1]  # the shared call fails, then each request alone
    assert isinstance(answers[1], ApiError)
    assert answers[1].status == 422
    assert "the model cannot predict these rows: negative measurements" in answers[1].message
    np.testing.assert_array_equal(answers[0], classifier.predict(good))
    np.testing.assert_array_equal(answers[2], classifier.predict(good))
    assert batches == [1, 2, 1]


@pytest.mark.parametrize("max_wait", [0.0, 3600.0])
def test_requests_that_arrive_later_form_a_new_batch(classifier: LogisticRegression, max_wait: float) -> None:
    predict = RecordingPredict(classifier)
    batcher = MicroBatcher(predict, max_rows=64, max_wait=max_wait)

    async def two_waves() -> None:
        await submit_all(batcher, [np.ones((1, 4))] * 3)
        await submit_all(batcher, [np.ones((1, 4))] * 2)

    asyncio.run(two_waves())

    assert predict.calls == [3, 2]
