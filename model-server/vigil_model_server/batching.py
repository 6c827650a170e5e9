"""Adaptive micro-batching: concurrent requests share one call into the model.

scikit-learn's per-call overhead is about the same for 1 row as for 64, so under load the
server predicts many requests' rows at once. A batch opens with the first request and
closes as soon as one turn of the event loop passes without a request joining (so a lone
request waits only a few microseconds), when it holds `max_rows` rows, or after
`max_wait` seconds, whichever comes first. With `max_rows=1` every request is predicted
alone, at once. Batches run on the event loop's thread: a
small scikit-learn call is shorter than handing work to another thread and back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from vigil_model_server.errors import invalid

PredictFunction = Callable[[np.ndarray], np.ndarray]


class MicroBatcher:
    """Coalesces concurrent `submit` calls into one call of `predict`."""

    def __init__(
        self,
        predict: PredictFunction,
        *,
        max_rows: int,
        max_wait: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self._max_rows = max_rows
        self._max_wait = max_wait
        self._on_batch = on_batch
        self._pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._pending_rows = 0
        self._opened_at = 0.0
        self._seen = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, rows: np.ndarray) -> np.ndarray:
        """The model's output for `rows`, computed together with other requests' rows."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append((rows, future))
        self._pending_rows += len(rows)
        if self._pending_rows >= self._max_rows:
            self._flush()
        elif len(self._pending) == 1:
            self._opened_at = loop.time()
            self._seen = 1
            loop.call_soon(self._close_if_settled)
        return await future

    def _close_if_settled(self) -> None:
        if not self._pending:
            return  # flushed early because it was full
        assert self._loop is not None
        grew = len(self._pending) != self._seen
        if grew and self._loop.time() - self._opened_at < self._max_wait:
            self._seen = len(self._pending)
            self._loop.call_soon(self._close_if_settled)
        else:
            self._flush()

    def _flush(self) -> None:
        batch, self._pending, self._pending_rows = self._pending, [], 0
        if len(batch) == 1:
            rows, future = batch[0]
            _settle(future, self._predict, rows)
            self._count(len(rows))
            return
        try:
            outputs = self._predict(np.concatenate([rows for rows, _ in batch]))
        except Exception:  # noqa: BLE001 - one request's bad rows must not fail the others
            for rows, future in batch:
                _settle(future, self._predict, rows)
                self._count(len(rows))
            return
        self._count(len(outputs))
        start = 0
        for rows, future in batch:
            end = start + len(rows)
            if not future.done():
                future.set_result(outputs[start:end])
            start = end

    def _count(self, rows: int) -> None:
        if self._on_batch is not None:
            self._on_batch(rows)


def _settle(future: asyncio.Future[np.ndarray], predict: PredictFunction, rows: np.ndarray) -> None:
    if future.done():  # the request was cancelled (client gone); nothing to answer
        return
    try:
        future.set_result(predict(rows))
    except (ValueError, TypeError) as error:
        # The rows passed our checks but the estimator refused them (a pipeline step's own rule).
        future.set_exception(invalid(f"the model cannot predict these rows: {error}"))
    except Exception as error:  # noqa: BLE001 - handed to the request, which answers 500
        future.set_exception(error)
