"""Adaptive micro-batching: concurrent requests share one call into the model.

scikit-learn's per-call overhead is about the same for 1 row as for 64, so under load the
server predicts many requests' rows at once. A batch opens with the first request and
closes as soon as one turn of the event loop passes without a request joining (so a lone
request waits only a few microseconds), when it holds `max_rows` rows, or after
`max_wait` seconds, whichever comes first. With `max_rows=1` every request is predicted
alone, at once. Small batches run on the event loop's thread: a small scikit-learn call is
shorter than handing work to another thread and back. A batch of more than `thread_rows` rows
(one large request) runs in `executor`, so the event loop, and with it the health probes,
never waits behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from vigil_model_server.errors import invalid

PredictFunction = Callable[[np.ndarray], np.ndarray]
# Per request of a batch: its output rows, or the error its rows alone raise.
Results = list[np.ndarray | BaseException]


class MicroBatcher:
    """Coalesces concurrent `submit` calls into one call of `predict`."""

    def __init__(
        self,
        predict: PredictFunction,
        *,
        max_rows: int,
        max_wait: float,
        on_batch: Callable[[int], None] | None = None,
        executor: Executor | None = None,
        thread_rows: int = 0,
    ) -> None:
        self._predict = predict
        self._max_rows = max_rows
        self._max_wait = max_wait
        self._on_batch = on_batch
        self._executor = executor
        self._thread_rows = thread_rows
        self._pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._pending_rows = 0
        self._opened_at = 0.0
        self._seen = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_threads: set[asyncio.Task[None]] = set()

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
        batch, rows, self._pending, self._pending_rows = self._pending, self._pending_rows, [], 0
        if self._executor is not None and rows > self._thread_rows:
            assert self._loop is not None
            task = self._loop.create_task(self._predict_in_thread(batch))
            self._in_threads.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._in_threads.discard)
            return
        self._deliver(batch, *self._compute([rows for rows, _ in batch]))

    async def _predict_in_thread(self, batch: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]) -> None:
        assert self._loop is not None
        parts = [rows for rows, _ in batch]
        try:
            results, sizes = await self._loop.run_in_executor(self._executor, self._compute, parts)
        except BaseException as error:  # the executor shut down, or the task was cancelled
            results, sizes = [error] * len(batch), []
            if isinstance(error, asyncio.CancelledError):
                for _, future in batch:
                    future.cancel()
                raise
        self._deliver(batch, results, sizes)

    def _compute(self, parts: list[np.ndarray]) -> tuple[Results, list[int]]:
        """Each part's output and the sizes of the calls made; runs on any thread."""
        if len(parts) == 1:
            return [_call(self._predict, parts[0])], [len(parts[0])]
        try:
            outputs = self._predict(np.concatenate(parts))
        except Exception:  # noqa: BLE001 - one request's bad rows must not fail the others
            return [_call(self._predict, rows) for rows in parts], [len(rows) for rows in parts]
        results: Results = []
        start = 0
        for rows in parts:
            results.append(outputs[start : start + len(rows)])
            start += len(rows)
        return results, [len(outputs)]

    def _deliver(
        self, batch: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]], results: Results, sizes: list[int]
    ) -> None:
        for size in sizes:
            if self._on_batch is not None:
                self._on_batch(size)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the request was cancelled (client gone); nothing to answer
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def _call(predict: PredictFunction, rows: np.ndarray) -> np.ndarray | BaseException:
    try:
        return predict(rows)
    except (ValueError, TypeError) as error:
        # The rows passed our checks but the estimator refused them (a pipeline step's own rule).
        return invalid(f"the model cannot predict these rows: {error}")
    except Exception as error:  # noqa: BLE001 - handed to the request, which answers 500
        return error
