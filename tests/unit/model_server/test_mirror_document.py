"""The mirror document written a chunk at a time (protocol.mirror.MirrorDocumentWriter)."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st

from vigil_model_server.protocol.mirror import MirrorDocumentWriter, parse_mirror_request

request = st.tuples(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=22),
    st.integers(1, 3),
)
chunked = st.lists(st.lists(request, min_size=1, max_size=5), min_size=1, max_size=6)


def arrays(requests: list[tuple[str, int]], start: int, labels: bool) -> tuple[np.ndarray, np.ndarray]:
    rows = sum(count for _, count in requests)
    features = np.arange(start, start + rows * 4, dtype=np.float64).reshape(rows, 4) / 7
    predictions = np.array([f"class-{i % 3}" for i in range(rows)]) if labels else np.arange(rows) % 3
    return features, predictions


@given(chunks=chunked, labels=st.booleans())
def test_a_document_written_in_chunks_is_the_whole_batch_in_order(
    chunks: list[list[tuple[str, int]]], labels: bool
) -> None:
    writer = MirrorDocumentWriter("3")
    ids, counts, all_rows, all_predictions = [], [], [], []
    start = 0
    for chunk in chunks:
        rows, predictions = arrays(chunk, start, labels)
        start += rows.size
        writer.add([i for i, _ in chunk], [c for _, c in chunk], rows, predictions)
        ids += [i for i, _ in chunk]
        counts += [c for _, c in chunk]
        all_rows.append(rows)
        all_predictions += predictions.tolist()
    document = orjson.loads(writer.document())
    assert document == {
        "stable_version": "3",
        "ids": ids,
        "row_counts": counts,
        "instances": np.concatenate(all_rows).tolist(),
        "predictions": all_predictions,
    }
    parsed = parse_mirror_request(document, "3")  # and the candidate takes it
    assert parsed.ids == ids
    assert np.array_equal(parsed.rows, np.concatenate(all_rows))
