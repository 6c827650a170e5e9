"""JSON numbers to numpy arrays, with a message saying what was wrong when they are not numbers."""

from __future__ import annotations

import numpy as np

from vigil_model_server.errors import invalid, malformed

_KIND_NAMES = {
    "b": "booleans",
    "i": "integers",
    "u": "integers",
    "f": "decimal numbers",
    "U": "strings",
    "O": "nulls, objects or integers too large for 64 bits",
}


def numbers(data: object, what: str) -> np.ndarray:
    """`data` (nested lists) as an array; 400 if not a list, 422 if ragged or not all one type."""
    if type(data) is not list:
        raise malformed(f"{what} must be a JSON list")
    try:
        return np.asarray(data)
    except (ValueError, TypeError, RecursionError):
        raise invalid(
            f"{what} is ragged or too deeply nested: every row needs the same number of values"
        ) from None


def kind_name(kind: str) -> str:
    """How a person would call values of numpy dtype kind `kind`."""
    return _KIND_NAMES.get(kind, "values that are not numbers")


def rows_from_instances(instances: object, what: str = '"instances"') -> np.ndarray:
    """KServe-style `[[f1, f2, ...], ...]` rows as a 2-D float array; 4xx with the reason if not."""
    values = numbers(instances, what)
    if values.dtype.kind not in "iuf":
        raise invalid(f"{what} must hold numbers; found {kind_name(values.dtype.kind)}")
    if values.ndim != 2:
        raise invalid(
            f"{what} must be a list of rows, each a list of feature values, like [[5.1, 3.5, 1.4, 0.2]]"
        )
    return values.astype(np.float64, copy=False)
