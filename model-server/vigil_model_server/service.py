"""One loaded model at work: predictions through the micro-batcher, feedback, and their metrics.

Shadow, both sides: a stable release mirrors what it answered and the labels it scored (when it has
a `Mirror`); a candidate records mirrored requests under the stable's ids, with the stable's
predictions, and counts each labelled pair by who was right.
"""

from __future__ import annotations

import contextlib
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from vigil_model_server.batching import MicroBatcher
from vigil_model_server.errors import too_large
from vigil_model_server.feedback import AccuracyWindow, PredictionCache
from vigil_model_server.loader import LoadedModel
from vigil_model_server.metrics import Metrics
from vigil_model_server.mirror import Mirror
from vigil_model_server.predictor import PREDICT, Predictor
from vigil_model_server.protocol.mirror import MirrorRequest
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

    def __init__(
        self, model: LoadedModel, settings: Settings, metrics: Metrics, mirror: Mirror | None = None
    ) -> None:
        self.model = model
        self.predictor = Predictor(model.estimator)
        self._metrics = metrics
        self._mirror = mirror
        self._max_infer_rows = settings.max_infer_rows
        self._max_feedback_rows = settings.max_feedback_rows
        max_rows = settings.batch_max_size if settings.batching else 1
        # One worker: large requests take turns there while the event loop keeps answering.
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="predict", initializer=self.predictor.configure_thread
        )
        self._batchers = {
            name: MicroBatcher(
                function,
                max_rows=max_rows,
                max_wait=settings.batch_max_wait_ms / 1000,
                on_batch=metrics.batch_size.observe,
                executor=self._executor,
                thread_rows=settings.batch_max_size,
            )
            for name, function in self.predictor.outputs.items()
        }
        self._cache = PredictionCache(settings.feedback_cache_size)
        self._accuracy = AccuracyWindow(settings.accuracy_window)
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
        self._check_rows(rows, self._max_infer_rows, "inference", "MODEL_MAX_INFER_ROWS")
        for name in outputs:
            self.predictor.output(name)
        if request_id is not None and PREDICT in outputs:
            self._cache.check_new(request_id)
        results = {}
        for name in outputs:
            results[name] = self.predictor.check_finite(name, await self._batchers[name].submit(rows))
        self._metrics.predictions.inc(len(rows))
        # A random id: one that could be guessed could be labelled by someone else first.
        response_id = request_id or secrets.token_urlsafe(16)
        if PREDICT in results:
            self._cache.remember(response_id, results[PREDICT])
            if self._mirror is not None:
                self._mirror.offer_predictions(response_id, rows, results[PREDICT])
        return Inference(response_id, results)

    async def record_mirrored(self, mirrored: MirrorRequest) -> int:
        """Predict rows the stable release answered; keep both predictions under its ids for labels.

        Returns how many ids were recorded: an id remembered already is left as it is.
        """
        rows = mirrored.rows
        self._check_rows(rows, self._max_infer_rows, "mirror", "MODEL_MAX_INFER_ROWS")
        stable = self.predictor.other_predictions(mirrored.predictions, len(rows))
        own = self.predictor.check_finite(PREDICT, await self._batchers[PREDICT].submit(rows))
        self._metrics.predictions.inc(len(rows))
        return self._cache.remember_pairs(mirrored.ids, mirrored.row_counts, own, stable)

    async def feedback_for_rows(self, rows: np.ndarray, labels: object) -> Scored:
        """Predict `rows` now and score the predictions against `labels`."""
        self._check_feedback_size(labels, self._max_feedback_rows)
        self._check_rows(rows, self._max_feedback_rows, "feedback", "MODEL_MAX_FEEDBACK_ROWS")
        truth = self.predictor.labels(labels, len(rows))
        predictions = self.predictor.check_finite(PREDICT, await self._batchers[PREDICT].submit(rows))
        self._metrics.predictions.inc(len(rows))
        scored, _ = self._score(predictions, truth)
        if self._mirror is not None:
            self._mirror.offer_labelled_rows(rows, predictions, truth.tolist())
        return scored

    def feedback_for_id(self, response_id: str, labels: object) -> Scored:
        """Score the predictions of the earlier response `response_id` against `labels`, once.

        Up to the inference cap, not the feedback cap: an answer of 1,500 rows takes its labels in
        one request (an id takes labels once), and its size was bounded when it was predicted.
        """
        self._check_feedback_size(labels, max(self._max_feedback_rows, self._max_infer_rows))
        predictions = self._cache.predictions(response_id)
        truth = self.predictor.labels(labels, len(predictions))
        stable = self._cache.stable_predictions(response_id)
        self._cache.mark_labelled(response_id)
        scored, correct = self._score(predictions, truth)
        if stable is not None:
            self._metrics.observe_paired(correct, np.asarray(stable == truth, dtype=bool))
        if self._mirror is not None:
            self._mirror.offer_labels(response_id, truth.tolist())
        return scored

    def _check_rows(self, rows: np.ndarray, limit: int, request: str, setting: str) -> None:
        self.predictor.check_rows(rows)
        if len(rows) > limit:
            raise too_large(
                f"the {request} request has {len(rows)} rows; the limit is {limit} ({setting}): "
                "send them in several requests"
            )

    def _check_feedback_size(self, labels: object, limit: int) -> None:
        if isinstance(labels, list) and len(labels) > limit:
            by_rows = limit == self._max_feedback_rows
            setting = "MODEL_MAX_FEEDBACK_ROWS" if by_rows else "MODEL_MAX_INFER_ROWS"
            raise too_large(
                f"the feedback request has {len(labels)} labels; the limit is {limit} ({setting})"
            )

    def _score(self, predictions: np.ndarray, truth: np.ndarray) -> tuple[Scored, np.ndarray]:
        """The feedback result, and per row whether the prediction was right."""
        correct = np.asarray(predictions == truth, dtype=bool)
        n_correct = int(np.count_nonzero(correct))
        accuracy = self._accuracy.add(correct)
        self._metrics.observe_feedback(len(truth), n_correct, accuracy)
        return Scored(labelled=len(truth), correct=n_correct, accuracy=accuracy), correct
