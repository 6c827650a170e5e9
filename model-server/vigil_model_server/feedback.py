"""Ground truth: recent predictions kept for labels that arrive later, and the rolling accuracy."""

from __future__ import annotations

from collections import OrderedDict, deque

import numpy as np

from vigil_model_server.errors import ApiError, not_found


class PredictionCache:
    """Predictions of recent responses by id, at most `max_rows` rows; the oldest go first."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        # None marks an id already labelled (it weighs one row, so those are evicted too).
        self._entries: OrderedDict[str, np.ndarray | None] = OrderedDict()
        # A shadow candidate's ids also hold the stable release's predictions of the same rows.
        self._stable: dict[str, np.ndarray] = {}
        self._rows = 0

    def __contains__(self, response_id: str) -> bool:
        return response_id in self._entries

    def check_new(self, response_id: str) -> None:
        """409 if `response_id` is remembered already (awaiting labels or labelled): ids are never reused."""
        if response_id in self._entries:
            raise ApiError(
                409,
                f"id {response_id!r} belongs to a recent prediction already; give each request its own id "
                "(or none: the server makes a random one)",
            )

    def remember(
        self, response_id: str, predictions: np.ndarray, stable_predictions: np.ndarray | None = None
    ) -> None:
        """Keep a copy of `predictions` for feedback by `response_id` (not if larger than the whole cache).

        A copy, because `predictions` may be a view into a whole batch's output, which it would pin.
        An id remembered already is refused (409), so a labelled id is never opened again.
        `stable_predictions`: the stable release's predictions of the same rows (a shadow candidate).
        """
        self.check_new(response_id)
        if len(predictions) > self.max_rows:
            return
        self._entries[response_id] = predictions.copy()
        if stable_predictions is not None:
            self._stable[response_id] = stable_predictions.copy()
        self._rows += len(predictions)
        while self._rows > self.max_rows:
            evicted_id, evicted = self._entries.popitem(last=False)
            self._stable.pop(evicted_id, None)
            self._rows -= _weight(evicted)

    def remember_pairs(
        self, response_ids: list[str], row_counts: list[int], predictions: np.ndarray, stable: np.ndarray
    ) -> int:
        """Keep each id's rows of `predictions` and of the stable's `stable`; returns how many were new.

        Ids known already are left as they are. One call per mirrored post of hundreds of ids: this
        loop is a shadow candidate's main cost, hence no call per id.
        """
        entries, paired = self._entries, self._stable
        recorded = start = 0
        for response_id, count in zip(response_ids, row_counts, strict=True):
            end = start + count
            if response_id not in entries and count <= self.max_rows:
                entries[response_id] = predictions[start:end].copy()
                paired[response_id] = stable[start:end].copy()
                self._rows += count
                recorded += 1
            start = end
        while self._rows > self.max_rows:
            evicted_id, evicted = entries.popitem(last=False)
            paired.pop(evicted_id, None)
            self._rows -= _weight(evicted)
        return recorded

    def predictions(self, response_id: str) -> np.ndarray:
        """The predictions of response `response_id`: 404 if unknown or evicted, 409 if labelled."""
        if response_id not in self._entries:
            raise not_found(
                f"no recent prediction has id {response_id!r}: it is unknown or older than the last "
                f"{self.max_rows} predicted rows (FEEDBACK_CACHE_SIZE); send the rows with the labels instead"
            )
        predictions = self._entries[response_id]
        if predictions is None:
            raise ApiError(409, f"prediction {response_id!r} already has labels; each id takes labels once")
        return predictions

    def stable_predictions(self, response_id: str) -> np.ndarray | None:
        """The stable release's predictions of response `response_id`'s rows, if it was mirrored here."""
        return self._stable.get(response_id)

    def mark_labelled(self, response_id: str) -> None:
        """Refuse further labels for `response_id`; frees its predictions."""
        self._forget(response_id)
        self._entries[response_id] = None
        self._rows += 1

    def _forget(self, response_id: str) -> None:
        if response_id in self._entries:
            self._rows -= _weight(self._entries.pop(response_id))
            self._stable.pop(response_id, None)


def _weight(entry: np.ndarray | None) -> int:
    return 1 if entry is None else len(entry)


class AccuracyWindow:
    """Share of correct predictions among the last `size` labelled ones."""

    def __init__(self, size: int) -> None:
        self._outcomes: deque[bool] = deque(maxlen=size)
        self._correct = 0

    def add(self, correct: np.ndarray) -> float:
        """Record one outcome per labelled row (True if correct); returns the accuracy now."""
        maxlen = self._outcomes.maxlen
        assert maxlen is not None
        for outcome in correct[-maxlen:].tolist():
            if len(self._outcomes) == maxlen:
                self._correct -= self._outcomes[0]
            self._outcomes.append(outcome)
            self._correct += outcome
        return self._correct / len(self._outcomes)
