"""The model service: random ids, row caps, copies in the feedback cache, large batches off the loop."""

import asyncio
import re
import threading
from collections.abc import Awaitable
from dataclasses import replace

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from vigil_model_server.errors import ApiError
from vigil_model_server.loader import LoadedModel
from vigil_model_server.metrics import Metrics
from vigil_model_server.service import ModelService
from vigil_model_server.settings import Settings

SETTINGS = Settings(model_uri="unused", model_name="iris", model_version="3")


def service_for(estimator: object, **settings: object) -> ModelService:
    model = LoadedModel(estimator=estimator, source="test", format="joblib", sha256="0" * 64)
    return ModelService(model, replace(SETTINGS, **settings), Metrics("iris", "3"))


def refusal(coroutine: object) -> ApiError:
    with pytest.raises(ApiError) as error_info:
        asyncio.run(coroutine)  # type: ignore[arg-type]
    return error_info.value


async def refused(coroutine: Awaitable[object]) -> ApiError:
    with pytest.raises(ApiError) as error_info:
        await coroutine
    return error_info.value


def test_response_ids_are_random_and_distinct(classifier: LogisticRegression) -> None:
    service = service_for(classifier)

    async def many() -> list[str]:
        return [(await service.infer(np.ones((1, 4)), ("predict",), None)).response_id for _ in range(1000)]

    ids = asyncio.run(many())

    assert len(set(ids)) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", response_id) for response_id in ids)  # 128 random bits
    # No shared prefix or counter to guess from: the first characters vary as much as the rest.
    assert len({response_id[:2] for response_id in ids}) > 500


def test_a_cached_row_of_a_shared_batch_is_a_copy(
    classifier: LogisticRegression, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    features, _ = iris
    service = service_for(classifier, batch_max_size=1_000_000, max_infer_rows=1_000_000)

    async def small_and_large_together() -> list[str]:
        small = service.infer(features[:1], ("predict",), None)
        large = service.infer(np.tile(features, (100, 1)), ("predict",), None)
        return [inference.response_id for inference in await asyncio.gather(small, large)]

    small_id, _ = asyncio.run(small_and_large_together())

    kept = service._cache.predictions(small_id)
    assert service._metrics.batch_size._sum.get() == 1 + 15_000  # one shared call
    assert (kept.base, kept.nbytes) == (None, kept.itemsize)


def test_rows_over_the_caps_get_413_naming_the_setting(classifier: LogisticRegression) -> None:
    service = service_for(classifier, max_infer_rows=5, max_feedback_rows=3)

    async def over_and_at_the_caps() -> tuple[ApiError, ApiError]:
        infer = await refused(service.infer(np.ones((6, 4)), ("predict",), None))
        by_rows = await refused(service.feedback_for_rows(np.ones((4, 4)), [0, 0, 0, 0]))
        await service.infer(np.ones((5, 4)), ("predict",), None)
        return infer, by_rows

    infer, by_rows = asyncio.run(over_and_at_the_caps())
    with pytest.raises(ApiError) as error_info:
        service.feedback_for_id("unknown", [0] * 6)
    by_id = error_info.value

    assert (infer.status, by_rows.status, by_id.status) == (413, 413, 413)
    assert "has 6 rows; the limit is 5 (MODEL_MAX_INFER_ROWS)" in infer.message
    assert "has 4 labels; the limit is 3 (MODEL_MAX_FEEDBACK_ROWS)" in by_rows.message
    # By id, an answer's labels come in one request: up to the inference cap.
    assert "has 6 labels; the limit is 5 (MODEL_MAX_INFER_ROWS)" in by_id.message


def test_an_answer_larger_than_the_feedback_cap_takes_its_labels_by_id(
    classifier: LogisticRegression,
) -> None:
    service = service_for(classifier, max_infer_rows=5, max_feedback_rows=3)

    async def predict() -> str:
        answer = await service.infer(np.ones((5, 4)), ("predict",), None)
        return answer.response_id

    response_id = asyncio.run(predict())
    scored = service.feedback_for_id(response_id, [0] * 5)
    assert scored.labelled == 5


def test_a_client_id_in_use_is_refused_and_a_labelled_one_never_reopens(
    classifier: LogisticRegression,
) -> None:
    service = service_for(classifier)
    setosa = np.array([[5.1, 3.5, 1.4, 0.2]])

    async def label_then_reuse() -> ApiError:
        await service.infer(setosa, ("predict",), "client-1")
        assert service.feedback_for_id("client-1", [0]).labelled == 1
        return await refused(service.infer(setosa, ("predict",), "client-1"))

    again = asyncio.run(label_then_reuse())

    assert again.status == 409
    with pytest.raises(ApiError, match="already has labels"):
        service.feedback_for_id("client-1", [0])


def test_a_large_batch_runs_in_the_worker_thread_and_a_small_one_on_the_loop(
    classifier: LogisticRegression,
) -> None:
    threads: list[str] = []

    class Recording(LogisticRegression):
        def predict(self, rows: np.ndarray) -> np.ndarray:
            threads.append(threading.current_thread().name)
            return super().predict(rows)

    recording = Recording(max_iter=1000)
    recording.__dict__.update(classifier.__dict__)
    service = service_for(recording, batch_max_size=64)
    threads.clear()  # the warm-up call

    async def small_then_large() -> None:
        await service.infer(np.ones((64, 4)), ("predict",), None)
        await service.infer(np.ones((65, 4)), ("predict",), None)

    asyncio.run(small_then_large())

    assert threads[0] == threading.main_thread().name
    assert threads[1].startswith("predict")


@pytest.mark.filterwarnings("ignore:.*encountered in log:RuntimeWarning")
def test_a_pipeline_that_makes_nan_gets_422_never_null_probabilities(
    iris: tuple[np.ndarray, np.ndarray],
) -> None:
    pipeline = make_pipeline(FunctionTransformer(np.log), LogisticRegression(max_iter=1000)).fit(*iris)
    service = service_for(pipeline)
    negative = np.array([[-5.1, 3.5, 1.4, 0.2]])

    async def both_outputs() -> list[ApiError]:
        return [
            await refused(service.infer(negative, (output,), None)) for output in ("predict_proba", "predict")
        ]

    for error in asyncio.run(both_outputs()):
        assert error.status == 422
        assert "NaN" in error.message


def test_non_finite_probabilities_are_refused_even_without_scikit_learns_check(
    classifier: LogisticRegression,
) -> None:
    class Broken(LogisticRegression):
        def predict_proba(self, rows: np.ndarray) -> np.ndarray:
            return np.full((len(rows), 3), np.nan)

    broken = Broken()
    broken.__dict__.update(classifier.__dict__)

    error = refusal(service_for(broken).infer(np.ones((1, 4)), ("predict_proba",), None))

    assert error.status == 422
    assert "the model produced a non-finite predict_proba output (NaN or infinity)" in error.message
