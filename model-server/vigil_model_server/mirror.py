"""Mirroring to a shadow candidate: a copy of each answered request and of each label, sent later.

The stable release answers first; a copy then waits in a queue bounded in rows, and one background
task posts the copies to the candidate, many requests per post (a post costs both servers about
the same for 1 request as for 500). A full queue drops the copy and counts it: a user never waits
for the candidate. Labels take the same queue, and each is posted only once every prediction
queued before it has been, so the candidate knows an id by the time its label comes.

Queued requests are kept column by column, a post's worth to a `_Batch`, never as an object per
request: such an object lives until its post, up to a quarter of a second, and enough of them
made the garbage collector run on the serving loop (434 collections in 26 s of `make bench-server`,
against 3 without mirroring).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import orjson

from vigil_model_server.metrics import Metrics
from vigil_model_server.protocol.mirror import MirrorDocumentWriter
from vigil_model_server.settings import Settings

log = logging.getLogger("vigil_model_server")

# Posts in flight at most: enough to hide a round trip, few enough not to crowd the candidate.
CONCURRENT_POSTS = 4
# A post closes at this many requests (or half the queue's rows, if fewer: the rest of the queue
# takes what arrives meanwhile), or this long after the worker found requests waiting. A post
# costs the candidate about 1 ms whatever its size, and the stable server 0.08 ms of CPU with aiohttp
# (httpx took 0.57 ms: the serving loop stalled that long, and every request in flight with it, so
# the mirroring p99 rose 27-65%); posts must be few and cheap (`make bench-server`).
MAX_REQUESTS_PER_POST = 512
LINGER_SECONDS = 0.25
# Feature values per post, at most (unless one request has more): about 1.5 MB of JSON, well under
# the candidate's MAX_BODY_BYTES.
MAX_VALUES_PER_POST = 65536
# Requests encoded per turn of the event loop: about 30 µs of the serving loop's time each.
ENCODE_CHUNK = 64


@dataclass(slots=True)
class _Batch:
    """Answered requests for one post, in order: request i is `ids[i]` with `rows[i]` and its
    `predictions[i]`. Adding one appends to lists; no object is made per request."""

    ids: list[str] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    predictions: list[np.ndarray] = field(default_factory=list)
    row_total: int = 0
    value_total: int = 0

    def fits(self, rows: np.ndarray, max_rows: int) -> bool:
        """Whether a request of `rows` still fits this post (the first request always does)."""
        return not self.ids or (
            len(self.ids) < MAX_REQUESTS_PER_POST
            and self.row_total + len(rows) <= max_rows
            and self.value_total + rows.size <= MAX_VALUES_PER_POST
        )

    def add(self, response_id: str, rows: np.ndarray, predictions: np.ndarray) -> None:
        self.ids.append(response_id)
        self.rows.append(rows)
        self.predictions.append(predictions)
        self.row_total += len(rows)
        self.value_total += rows.size


@dataclass(slots=True)
class _Labels:
    document: dict[str, object]  # a feedback document by id: {"id": ..., "labels": [...]}
    weight: int


class Mirror:
    """Sends copies of answered requests and labels to the candidate at `settings.mirror_url`.

    `token` gives the feedback token to send as the bearer (None: none is configured or readable).
    Build it anywhere; `start` and `close` run on the server's event loop.
    """

    def __init__(self, settings: Settings, metrics: Metrics, token: Callable[[], bytes | None]) -> None:
        assert settings.mirror_url is not None
        self._models_url = f"{settings.mirror_url}/v2/models/{settings.model_name}"
        self._stable_version = settings.model_version
        self._max_queued_rows = settings.mirror_queue_size
        self._full_post_rows = max(1, settings.mirror_queue_size // 2)
        self._max_rows_per_post = settings.max_infer_rows
        self._timeout = settings.mirror_timeout_seconds
        self._metrics = metrics
        self._token = token
        self._queue: deque[_Batch | _Labels] = deque()
        self._queued_rows = 0
        self._queued_requests = 0  # each request of a batch, each labels document
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(CONCURRENT_POSTS)
        self._prediction_posts: set[asyncio.Task[None]] = set()
        self._posts: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._running = False
        self._client: aiohttp.ClientSession | None = None
        self._last_failure: str | None = None  # its kind: a status code, an exception's name

    async def start(self) -> None:
        """Open the keep-alive client and start posting."""
        # aiohttp, not httpx: its C parser costs the serving loop a seventh of httpx's time per post.
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONCURRENT_POSTS),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            auto_decompress=False,
        )
        self._worker = asyncio.create_task(self._run(), name="mirror")
        self._running = True
        log.info("mirroring predictions and labels to %s", self._models_url)

    async def close(self) -> None:
        """Stop: posts in flight get their timeout to finish; what is still queued is counted dropped."""
        self._running = False
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._posts:
            _, late = await asyncio.wait(self._posts, timeout=self._timeout)
            for post in late:
                post.cancel()
        for item in self._queue:
            if isinstance(item, _Batch):
                self._metrics.count_mirrored("predictions", "dropped", len(item.ids))
            else:
                self._metrics.count_mirrored("labels", "dropped")
        self._queue.clear()
        if self._client is not None:
            await self._client.close()

    def offer_predictions(self, response_id: str, rows: np.ndarray, predictions: np.ndarray) -> None:
        """Queue the rows of answered request `response_id` and their predictions, or drop them."""
        if self._has_room(len(rows)):
            self._put_predictions(response_id, rows, predictions)
        else:
            self._metrics.count_mirrored("predictions", "dropped")

    def offer_labels(self, response_id: str, labels: list[object]) -> None:
        """Queue labels for the answer `response_id`, or drop them."""
        if self._has_room(len(labels)):
            self._put_labels(_Labels({"id": response_id, "labels": labels}, len(labels)))
        else:
            self._metrics.count_mirrored("labels", "dropped")

    def offer_labelled_rows(self, rows: np.ndarray, predictions: np.ndarray, labels: list[object]) -> None:
        """Queue rows labelled on arrival as a prediction under a new id plus its labels, so they pair too."""
        if self._has_room(2 * len(rows)):
            response_id = secrets.token_urlsafe(16)
            self._put_predictions(response_id, rows, predictions)
            self._put_labels(_Labels({"id": response_id, "labels": labels}, len(labels)))
        else:
            self._metrics.count_mirrored("predictions", "dropped")
            self._metrics.count_mirrored("labels", "dropped")

    def _has_room(self, rows: int) -> bool:
        return self._running and self._queued_rows + rows <= self._max_queued_rows

    def _put_predictions(self, response_id: str, rows: np.ndarray, predictions: np.ndarray) -> None:
        tail = self._queue[-1] if self._queue else None
        if not isinstance(tail, _Batch) or not tail.fits(rows, self._max_rows_per_post):
            tail = _Batch()
            self._queue.append(tail)
        tail.add(response_id, rows, predictions)
        self._queued(len(rows))

    def _put_labels(self, labels: _Labels) -> None:
        self._queue.append(labels)
        self._queued(labels.weight)

    def _queued(self, rows: int) -> None:
        self._queued_rows += rows
        self._queued_requests += 1
        if self._queued_requests == 1 or self._post_is_full():
            self._wake.set()

    def _post_is_full(self) -> bool:
        return self._queued_requests >= MAX_REQUESTS_PER_POST or self._queued_rows >= self._full_post_rows

    async def _run(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            if not self._post_is_full():
                # Let more requests join this post; a full post's worth ends the wait early.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LINGER_SECONDS):
                        await self._wake.wait()
            await self._slots.acquire()
            head = self._take()
            if isinstance(head, _Labels):
                # Once every prediction queued before these labels has been posted.
                self._spawn(self._send_labels(head, tuple(self._prediction_posts)))
            else:
                try:
                    body = await self._encode(head)
                except BaseException:
                    self._slots.release()
                    raise
                post = self._spawn(self._send_predictions(len(head.ids), body))
                self._prediction_posts.add(post)
                post.add_done_callback(self._prediction_posts.discard)

    def _spawn(self, coroutine: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)
        task.add_done_callback(lambda _: self._slots.release())
        return task

    def _take(self) -> _Batch | _Labels:
        """The head of the queue: a post's worth of requests, or one labels document."""
        head = self._queue.popleft()
        if isinstance(head, _Batch):
            self._queued_rows -= head.row_total
            self._queued_requests -= len(head.ids)
        else:
            self._queued_rows -= head.weight
            self._queued_requests -= 1
        return head

    async def _encode(self, batch: _Batch) -> bytes:
        """The mirror document of `batch`, encoded `ENCODE_CHUNK` requests at a time with a turn of
        the event loop between chunks: the serving loop never waits for more than a chunk's worth."""
        writer = MirrorDocumentWriter(self._stable_version)
        try:
            for start in range(0, len(batch.ids), ENCODE_CHUNK):
                end = start + ENCODE_CHUNK
                rows = batch.rows[start:end]
                writer.add(
                    batch.ids[start:end],
                    [len(one) for one in rows],
                    np.concatenate(rows),
                    np.concatenate(batch.predictions[start:end]),
                )
                await asyncio.sleep(0)
        except asyncio.CancelledError:  # closing: what was taken is not posted
            self._metrics.count_mirrored("predictions", "dropped", len(batch.ids))
            raise
        return writer.document()

    async def _send_predictions(self, requests: int, body: bytes) -> None:
        sent = await self._post("mirror", body)
        self._metrics.count_mirrored("predictions", "sent" if sent else "failed", requests)

    async def _send_labels(self, labels: _Labels, earlier: Collection[asyncio.Task[None]]) -> None:
        if earlier:
            await asyncio.wait(earlier)
        sent = await self._post("feedback", orjson.dumps(labels.document))
        self._metrics.count_mirrored("labels", "sent" if sent else "failed")

    async def _post(self, endpoint: str, body: bytes) -> bool:
        """Post `body` to the candidate's `endpoint` within the timeout; whether it took it (2xx)."""
        assert self._client is not None
        headers = {"content-type": "application/json"}
        token = self._token()
        if token is not None:
            headers["authorization"] = f"Bearer {token.decode()}"
        url = f"{self._models_url}/{endpoint}"
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._client.post(url, data=body, headers=headers) as response,
            ):
                status = response.status
                answer = await response.read()  # read to the end: the connection then stays open
        except TimeoutError:
            late = f"no answer from {url} within {self._timeout:g}s (MIRROR_TIMEOUT_SECONDS)"
            self._report(late, "timeout")
            return False
        except aiohttp.ClientError as error:
            self._report(f"{url}: {type(error).__name__}: {error}", type(error).__name__)
            return False
        if 200 <= status < 300:
            self._report(None, None)
            return True
        self._report(f"{url} answered {status}: {answer[:300].decode(errors='replace')}", str(status))
        return False

    def _report(self, problem: str | None, kind: str | None) -> None:
        """Log a failure when its kind changes, and the recovery: not one line per post."""
        if kind == self._last_failure:
            return
        if problem is None:
            log.info("mirroring to %s works again", self._models_url)
        else:
            log.warning("mirroring failed (counted in vigil_model_mirror_total): %s", problem)
        self._last_failure = kind
