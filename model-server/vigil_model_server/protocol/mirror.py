"""The mirror document: requests a stable release answered, posted to its shadow candidate.

Column-wise, so that a batch of many one-row requests is one array of rows for the candidate to
predict at once, not a list of small documents:

    {"stable_version": "3", "ids": ["a", "b"], "row_counts": [1, 2],
     "instances": [[...], [...], [...]], "predictions": [0, 2, 1]}

`ids[i]` is the response id of the stable release's answer with the next `row_counts[i]` rows
of `instances`; `predictions` holds its `predict` output for every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from vigil_model_server.errors import ApiError, invalid, malformed
from vigil_model_server.protocol.arrays import rows_from_instances
from vigil_model_server.protocol.v2 import MAX_ID_LENGTH

_USAGE = (
    '{"stable_version": "3", "ids": ["<response id>"], "row_counts": [1], '
    '"instances": [[5.1, 3.5, 1.4, 0.2]], "predictions": [0]}'
)

_FIELDS = {"stable_version", "ids", "row_counts", "instances", "predictions"}


@dataclass(frozen=True)
class MirrorRequest:
    """Rows a stable release answered, by response id, with its predictions (checked by the predictor)."""

    stable_version: str
    ids: list[str]
    row_counts: list[int]
    rows: np.ndarray
    predictions: object


def parse_mirror_request(payload: object, stable_version: str) -> MirrorRequest:
    """A mirror document from its JSON; 400 or 422 if it is not one, 409 from another stable version."""
    if type(payload) is not dict or not payload.keys() >= _FIELDS:
        raise malformed(f"a mirror request is a JSON object like {_USAGE}")
    sent_version = payload["stable_version"]
    if type(sent_version) is not str:
        raise malformed('"stable_version" must be the string version of the stable release')
    if sent_version != stable_version:
        raise ApiError(
            409,
            f"this shadow candidate is paired with stable version {stable_version!r} (STABLE_VERSION), "
            f"not {sent_version!r}: its counts would compare with the wrong release",
        )
    ids, row_counts = payload["ids"], payload["row_counts"]
    if type(ids) is not list or not ids:
        raise malformed('"ids" must be a non-empty list of response ids')
    if not all(type(one) is str and 0 < len(one) <= MAX_ID_LENGTH for one in ids):
        raise malformed(f'each of "ids" must be a string of 1 to {MAX_ID_LENGTH} characters')
    if type(row_counts) is not list or len(row_counts) != len(ids):
        raise malformed('"row_counts" must be a list with one number of rows per id')
    if not all(type(count) is int and count > 0 for count in row_counts):
        raise malformed('each of "row_counts" must be a whole number of rows, at least 1')
    rows = rows_from_instances(payload["instances"])
    if sum(row_counts) != len(rows):
        raise invalid(f'"row_counts" add up to {sum(row_counts)} rows but "instances" has {len(rows)}')
    return MirrorRequest(sent_version, ids, row_counts, rows, payload["predictions"])


class MirrorDocumentWriter:
    """Writes a mirror document a few requests at a time, so that no single step is long.

    The stable release builds it on its serving loop: a whole post of 512 requests encoded at
    once held every request in flight for 0.2-0.5 ms, about 30 times a second, enough to move
    p99. `add` encodes one chunk (its parts go straight into the JSON arrays); `document` joins.
    """

    def __init__(self, stable_version: str) -> None:
        self._stable_version = stable_version
        self._ids: list[bytes] = []
        self._row_counts: list[bytes] = []
        self._instances: list[bytes] = []
        self._predictions: list[bytes] = []

    def add(self, ids: list[str], row_counts: list[int], rows: np.ndarray, predictions: np.ndarray) -> None:
        """Append requests `ids`, with `row_counts[i]` rows each, in order."""
        self._ids.append(_items(ids))
        self._row_counts.append(_items(row_counts))
        self._instances.append(_items(rows))
        self._predictions.append(
            _items(predictions if predictions.dtype.kind in "biuf" else predictions.tolist())
        )

    def document(self) -> bytes:
        """The JSON document of every request added, in the order added."""
        return b"".join(
            (
                b'{"stable_version":',
                orjson.dumps(self._stable_version),
                b',"ids":[',
                b",".join(self._ids),
                b'],"row_counts":[',
                b",".join(self._row_counts),
                b'],"instances":[',
                b",".join(self._instances),
                b'],"predictions":[',
                b",".join(self._predictions),
                b"]}",
            )
        )


def _items(values: object) -> bytes:
    """A JSON array's items without its brackets (orjson writes numpy arrays natively)."""
    return orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
