"""The shell of batched checks: the due checks of one tick that share a Prometheus, as one query.

An object whose check is due asks `Batcher.answer` for its share and awaits it. The first request
for a Prometheus (same URL, credentials and limits) and evaluation time opens a short window,
which stretches while requests keep arriving; every request of that tick arriving within it
joins; then one query goes out (`batching` builds it
and splits the answer, `prometheus` sends it) and each object gets its own series back. A request
arriving after its tick's query left starts another: correct, only one more query.

Slow Prometheus servers stay apart: at most `per_prometheus` queries are in flight to each, at most
`concurrency` in all, and one deadline (the objects' query timeout) covers both the wait for a
slot and the query, so a hung Prometheus delays only its own objects, by that timeout at most.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from vigil_operator import metrics, prometheus
from vigil_operator.batching import CheckRequest, batch_query, split_answer

DEFAULT_WINDOW_SECONDS = 1.0
DEFAULT_CONCURRENCY = 16
DEFAULT_PER_PROMETHEUS = 2
# A window is never longer than this share of its interval (1 s checks wait 0.1 s), and it
# grows while requests keep arriving: by a quarter window at a time, to three windows at most.
WINDOW_SHARE_OF_INTERVAL = 0.1
QUIET_SPELLS_PER_WINDOW = 4
MAX_WINDOWS = 3
# What a batch may read, per object it answers (a real answer is about 300 bytes per object), on
# top of the operator's cap for one answer: a batch of 3,000 objects must not hit the cap of one.
BYTES_PER_OBJECT = 2048


@dataclass
class _Pending:
    """The requests of one tick waiting for their query."""

    requests: list[tuple[CheckRequest, asyncio.Future[dict[str, Any]]]] = field(default_factory=list)


class Batcher:
    """Coalesces due checks per (Prometheus, evaluation time); one instance per event loop."""

    def __init__(
        self,
        window: float = DEFAULT_WINDOW_SECONDS,
        concurrency: int = DEFAULT_CONCURRENCY,
        per_prometheus: int = DEFAULT_PER_PROMETHEUS,
    ) -> None:
        if window < 0 or concurrency < 1 or per_prometheus < 1:
            raise ValueError("window must be >= 0, concurrency and per_prometheus >= 1")
        self.window = window
        self._per_prometheus = per_prometheus
        self._all = asyncio.Semaphore(concurrency)
        self._servers: dict[str, asyncio.Semaphore] = {}
        self._pending: dict[tuple[prometheus.PrometheusAccess, datetime], _Pending] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def answer(
        self, access: prometheus.PrometheusAccess, request: CheckRequest, at: datetime, interval: float
    ) -> dict[str, Any]:
        """This request's share of its tick's batched answer (`batching.split_answer`).

        Raises PrometheusError when the batch's query fails: every member gets the same error.
        """
        key = (access, at)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
            window = min(self.window, interval * WINDOW_SHARE_OF_INTERVAL)
            task = asyncio.create_task(self._send(key, pending, window), name="vigil:batch")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        pending.requests.append((request, future))
        return await future

    async def close(self) -> None:
        """Stop the batches in flight (their objects get an error, or are being cancelled too)."""
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    async def _send(
        self, key: tuple[prometheus.PrometheusAccess, datetime], pending: _Pending, window: float
    ) -> None:
        access, at = key
        try:
            await self._gather(pending, window)
        finally:
            if self._pending.get(key) is pending:  # later requests of this tick start a new batch
                del self._pending[key]
        requests = [request for request, future in pending.requests if not future.done()]
        try:
            if not requests:
                return
            answers = await self._query(access, requests, at)
        except prometheus.PrometheusError as error:
            self._settle(pending, error=error)
        except asyncio.CancelledError:
            self._settle(pending, error=prometheus.PrometheusError("the operator is stopping"))
            raise
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as error:
            unexpected = f"unexpected answer from Prometheus: {type(error).__name__}: {error}"
            self._settle(pending, error=prometheus.PrometheusError(unexpected))
        else:
            self._settle(pending, answers=answers)

    @staticmethod
    async def _gather(pending: _Pending, window: float) -> None:
        """Wait `window`, and longer while requests still arrive (up to `MAX_WINDOWS` windows).

        Objects due on one tick wake together but reach their check after reading their own
        state, which takes longer when thousands wake at once; a quiet spell means they are in.
        """
        await asyncio.sleep(window)
        for _ in range(MAX_WINDOWS * QUIET_SPELLS_PER_WINDOW - QUIET_SPELLS_PER_WINDOW):
            arrived = len(pending.requests)
            await asyncio.sleep(window / QUIET_SPELLS_PER_WINDOW)
            if len(pending.requests) == arrived:
                return

    async def _query(
        self, access: prometheus.PrometheusAccess, requests: list[CheckRequest], at: datetime
    ) -> dict[CheckRequest, dict[str, Any]]:
        batch = batch_query(list(dict.fromkeys(requests)))
        allowance = max(access.max_response_bytes, len(batch.group_of) * BYTES_PER_OBJECT)
        metrics.BATCH_SIZE.labels(access.safe_url).observe(len(requests))
        try:
            async with asyncio.timeout(access.timeout):
                async with self._slot(access):
                    data = await prometheus.instant_query(
                        replace(access, max_response_bytes=allowance), batch.query, at
                    )
        except TimeoutError:
            raise prometheus.PrometheusError(
                f"Prometheus at {access.safe_url} did not answer within {access.timeout:g}s"
            ) from None
        return split_answer(batch, data)

    @contextlib.asynccontextmanager
    async def _slot(self, access: prometheus.PrometheusAccess) -> AsyncIterator[None]:
        """One of this Prometheus' slots, then one of all: a hung server holds only its own."""
        server = self._servers.setdefault(access.url, asyncio.Semaphore(self._per_prometheus))
        async with server, self._all:
            yield

    @staticmethod
    def _settle(
        pending: _Pending,
        answers: dict[CheckRequest, dict[str, Any]] | None = None,
        error: Exception | None = None,
    ) -> None:
        for request, future in pending.requests:
            if future.done():
                continue
            if answers is not None:
                future.set_result(answers[request])
            else:
                # One exception each: a shared one would gather every awaiter's traceback.
                future.set_exception(prometheus.PrometheusError(str(error) if error else "no answer"))
