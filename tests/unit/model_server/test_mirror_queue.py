"""The stable server's mirror queue: requests kept column by column, a post's worth to a batch.

What is offered comes out in order, labels behind the predictions queued before them, each batch
within a post's limits, and nothing is lost without being counted. No network: the queue is
filled and drained by hand, the way the background task drains it.
"""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st

from vigil_model_server.metrics import Metrics
from vigil_model_server.mirror import MAX_REQUESTS_PER_POST, Mirror, _Batch, _Labels
from vigil_model_server.protocol.mirror import parse_mirror_request
from vigil_model_server.settings import Settings

FEATURES = 4


def mirror(queue_rows: int, post_rows: int) -> tuple[Mirror, Metrics]:
    settings = Settings(
        model_uri="unused",
        model_name="iris",
        model_version="3",
        mirror_url="http://127.0.0.1:9",
        mirror_queue_size=queue_rows,
        max_infer_rows=post_rows,
    )
    metrics = Metrics("iris", "3", mirroring=True)
    queue = Mirror(settings, metrics, lambda: None)
    queue._running = True  # what start() sets, without its client and background task
    return queue, metrics


def rows_of(request: int, count: int) -> np.ndarray:
    return np.full((count, FEATURES), float(request))


def drain(queue: Mirror) -> list[_Batch | _Labels]:
    taken = []
    while queue._queue:
        taken.append(queue._take())
    return taken


def dropped(metrics: Metrics, kind: str) -> float:
    sample = metrics.registry.get_sample_value(
        "vigil_model_mirror_total", {"model": "iris", "version": "3", "kind": kind, "result": "dropped"}
    )
    return sample or 0.0


# Each offer: a prediction of n rows (n > 0) or, with n == 0, labels for the last prediction.
offers = st.lists(st.integers(0, 6), max_size=60)


@given(offers=offers, queue_rows=st.integers(1, 80), post_rows=st.integers(1, 12))
def test_what_is_offered_comes_out_in_order_within_a_posts_limits_or_is_counted_dropped(
    offers: list[int], queue_rows: int, post_rows: int
) -> None:
    queue, metrics = mirror(queue_rows, post_rows)
    queued: list[tuple[str, str]] = []  # ("predictions" | "labels", id), in the order queued
    refused = {"predictions": 0, "labels": 0}
    for number, rows in enumerate(offers):
        if rows:
            before = queue._queued_rows
            queue.offer_predictions(f"r{number}", rows_of(number, rows), np.full(rows, number % 3))
            kept = queue._queued_rows > before
            queued += [("predictions", f"r{number}")] if kept else []
            refused["predictions"] += 0 if kept else 1
        else:
            before = queue._queued_rows
            queue.offer_labels(f"r{number - 1}", [0])
            kept = queue._queued_rows > before
            queued += [("labels", f"r{number - 1}")] if kept else []
            refused["labels"] += 0 if kept else 1
        assert queue._queued_rows <= queue_rows

    taken = drain(queue)
    out: list[tuple[str, str]] = []
    for item in taken:
        if isinstance(item, _Labels):
            out.append(("labels", str(item.document["id"])))
            continue
        out += [("predictions", one) for one in item.ids]
        assert 1 <= len(item.ids) <= MAX_REQUESTS_PER_POST
        assert item.row_total == sum(len(one) for one in item.rows)
        assert len(item.ids) == 1 or item.row_total <= post_rows
    assert out == queued
    assert (queue._queued_rows, queue._queued_requests) == (0, 0)
    assert dropped(metrics, "predictions") == refused["predictions"]
    assert dropped(metrics, "labels") == refused["labels"]


def test_a_batch_closes_at_a_posts_requests_and_encodes_to_the_document_the_candidate_parses() -> None:
    queue, _ = mirror(queue_rows=4096, post_rows=10_000)
    for number in range(MAX_REQUESTS_PER_POST + 76):
        queue.offer_predictions(f"r{number}", rows_of(number, 1), np.array([number % 3]))
    batches = drain(queue)
    assert [len(batch.ids) for batch in batches if isinstance(batch, _Batch)] == [MAX_REQUESTS_PER_POST, 76]

    first = batches[0]
    assert isinstance(first, _Batch)
    document = asyncio.run(queue._encode(first))
    parsed = parse_mirror_request(orjson.loads(document), "3")
    assert parsed.ids == [f"r{number}" for number in range(MAX_REQUESTS_PER_POST)]
    assert parsed.row_counts == [1] * MAX_REQUESTS_PER_POST
    np.testing.assert_array_equal(parsed.rows[:, 0], np.arange(MAX_REQUESTS_PER_POST, dtype=float))
    assert parsed.predictions == [number % 3 for number in range(MAX_REQUESTS_PER_POST)]


def test_queueing_a_request_makes_no_object_the_garbage_collector_tracks() -> None:
    """Objects tracked by the collector that outlive their request make it run on the serving loop."""
    import gc

    queue, _ = mirror(queue_rows=4096, post_rows=10_000)
    rows, predictions = rows_of(0, 1), np.array([0])
    queue.offer_predictions("first", rows, predictions)  # the batch itself: one per post
    gc.collect()
    before = len(gc.get_objects())
    for number in range(300):
        queue.offer_predictions(f"r{number}", rows, predictions)
    assert len(gc.get_objects()) - before < 10
