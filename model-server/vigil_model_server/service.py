"""One loaded model at work: predictions through the micro-batcher, feedback, and their metrics."""

from __future__ import annotations

import contextlib
import itertools
import secrets
from dataclasses import dataclass

import numpy as np

from vigil_model_server.batching import MicroBatcher
from vigil_model_server.feedback import AccuracyWindow, PredictionCache
from vigil_model_server.loader import LoadedModel
from vigil_model_server.metrics import Metrics
from vigil_model_server.predictor import PREDICT, Predictor
from vigil_model_server.settings import Settings


@dataclass(frozen=True)
class Inference:
    """The outputs computed for one request, in the order asked, and the response id."""

    response_id: str
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class Scored:
    """The result of one feedback request."""

    labelled: int
    correct: int
    accuracy: float


class ModelService:
    """Predicts and scores for one model; build it on the event loop's thread (see Predictor)."""

    def __init__(self, model: LoadedModel, settings: Settings, metrics: Metrics) -> None:
        self.model = model
        self.predictor = Predictor(model.estimator)
        self._metrics = metrics
        max_rows = settings.batch_max_size if settings.batching else 1
        self._batchers = {
            name: MicroBatcher(
                function,
                max_rows=max_rows,
                max_wait=settings.batch_max_wait_ms / 1000,
                on_batch=metrics.batch_size.observe,
            )
            for name, function in self.predictor.outputs.items()
        }
        self._cache = PredictionCache(settings.feedback_cache_size)
        self._accuracy = AccuracyWindow(settings.accuracy_window)
        # Unique across restarts and replicas without the cost of a uuid per request.
        self._id_prefix = secrets.token_hex(6)
        self._next_id = itertools.count(1)
        self._warm_up()

    def _warm_up(self) -> None:
        """Call each output once: scikit-learn's first call costs ~10 ms of imports and caches."""
        if self.predictor.n_features is None:
            return
        rows = np.zeros((1, self.predictor.n_features))
        for function in self.predictor.outputs.values():
            # A model may refuse all-zero rows (a log transform); then the first request pays.
            with contextlib.suppress(ValueError, TypeError, ArithmeticError):
                function(rows)

    async def infer(self, rows: np.ndarray, outputs: tuple[str, ...], request_id: str | None) -> Inference:
        """Compute `outputs` for `rows`; the `predict` output is kept for feedback by id."""
        self.predictor.check_rows(rows)
        for name in outputs:
            self.predictor.output(name)
        results = {name: await self._batchers[name].submit(rows) for name in outputs}
        self._metrics.predictions.inc(len(rows))
        response_id = request_id or f"{self._id_prefix}-{next(self._next_id)}"
        if PREDICT in results:
            self._cache.remember(response_id, results[PREDICT])
        return Inference(response_id, results)

    async def feedback_for_rows(self, rows: np.ndarray, labels: object) -> Scored:
        """Predict `rows` now and score the predictions against `labels`."""
        self.predictor.check_rows(rows)
        truth = self.predictor.labels(labels, len(rows))
        predictions = await self._batchers[PREDICT].submit(rows)
        self._metrics.predictions.inc(len(rows))
        return self._score(predictions, truth)

    def feedback_for_id(self, response_id: str, labels: object) -> Scored:
        """Score the predictions of the earlier response `response_id` against `labels`, once."""
        predictions = self._cache.predictions(response_id)
        truth = self.predictor.labels(labels, len(predictions))
        self._cache.mark_labelled(response_id)
        return self._score(predictions, truth)

    def _score(self, predictions: np.ndarray, truth: np.ndarray) -> Scored:
        correct = np.asarray(predictions == truth, dtype=bool)
        n_correct = int(np.count_nonzero(correct))
        accuracy = self._accuracy.add(correct)
        self._metrics.observe_feedback(len(truth), n_correct, accuracy)
        return Scored(labelled=len(truth), correct=n_correct, accuracy=accuracy)
