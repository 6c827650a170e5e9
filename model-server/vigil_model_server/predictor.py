"""The model runtime seam: what the estimator takes and gives, and the calls into it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vigil_model_server.errors import invalid

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"

_V2_DATATYPES = {"b": "BOOL", "i": "INT64", "u": "UINT64", "f": "FP64"}


def v2_datatype(dtype: np.dtype) -> str:
    """The Open Inference Protocol datatype for a numpy dtype (BYTES for strings and objects)."""
    return _V2_DATATYPES.get(dtype.kind, "BYTES")


class Predictor:
    """A fitted estimator with input checks; `method` names an output (predict, predict_proba)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        # Inputs are checked for NaN and infinity here before every call, so scikit-learn's own
        # check (about 100 µs per call, half of a one-row predict) is switched off, but only for
        # an estimator that sees the rows as sent: a pipeline's step can turn finite rows into NaN
        # (a log of a negative value), which only scikit-learn's check of the next step catches.
        self.assume_finite = not _transforms_inputs(estimator)
        self.configure_thread()
        width = getattr(estimator, "n_features_in_", None)
        self.n_features: int | None = int(width) if width is not None else None
        classes = getattr(estimator, "classes_", None)
        self.classes: np.ndarray | None = np.asarray(classes) if classes is not None else None
        self.outputs: dict[str, Callable[[np.ndarray], np.ndarray]] = {PREDICT: estimator.predict}
        if callable(getattr(estimator, PREDICT_PROBA, None)):
            self.outputs[PREDICT_PROBA] = estimator.predict_proba

    def configure_thread(self) -> None:
        """Set scikit-learn's checks for the calling thread (its settings are per thread).

        Called when the Predictor is built (on the event loop's thread) and in each worker thread.
        """
        import sklearn

        sklearn.set_config(assume_finite=self.assume_finite, skip_parameter_validation=True)

    def check_rows(self, rows: np.ndarray) -> np.ndarray:
        """`rows` if it is a 2-D float array of finite values as wide as the model's input; else 422."""
        if rows.ndim != 2:
            raise invalid(
                f"expected rows of features (a 2-D array), got an array with {rows.ndim} dimension(s)"
            )
        if rows.shape[0] == 0:
            raise invalid("no rows to predict")
        if self.n_features is not None and rows.shape[1] != self.n_features:
            raise invalid(f"each row needs {self.n_features} features, got {rows.shape[1]}")
        if not np.isfinite(rows).all():
            raise invalid("input contains NaN, infinity or null; every feature must be a finite number")
        return rows

    def check_finite(self, name: str, values: np.ndarray) -> np.ndarray:
        """`values` of output `name` if it holds no NaN or infinity; else 422 (never a 200 with nulls)."""
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise invalid(
                f"the model produced a non-finite {name} output (NaN or infinity) for these rows; "
                "a step of its pipeline cannot take these values"
            )
        return values

    def output(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        """The function computing output `name`; 422 naming the outputs there are if unknown."""
        try:
            return self.outputs[name]
        except KeyError:
            raise invalid(f"unknown output {name!r}; this model gives {', '.join(self.outputs)}") from None

    def output_metadata(self) -> list[dict[str, Any]]:
        """Name, datatype and shape of each output, as the V2 metadata endpoint lists them."""
        label_type = v2_datatype(self.classes.dtype) if self.classes is not None else "FP64"
        described = [{"name": PREDICT, "datatype": label_type, "shape": [-1]}]
        if PREDICT_PROBA in self.outputs:
            n_classes = len(self.classes) if self.classes is not None else -1
            described.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, n_classes]})
        return described

    def labels(self, labels: object, n_rows: int) -> np.ndarray:
        """Ground-truth `labels` for `n_rows` predictions as an array comparable with them; else 422."""
        if self.classes is None:
            raise invalid("feedback needs a classifier; this model has no classes_ to compare labels with")
        array = self._class_values(labels, n_rows, "labels", "label")
        unknown = array[~np.isin(array, self.classes)]
        if unknown.size:
            shown = self._shown_classes()
            raise invalid(f"label {unknown[0].item()!r} is not one of the model's classes: {shown}")
        return array

    def other_predictions(self, predictions: object, n_rows: int) -> np.ndarray:
        """Another version's predictions of `n_rows` rows, comparable with labels; else 422.

        Of the classes' type but not checked against this model's classes: the other version may
        predict a class this one does not know (and is then wrong).
        """
        return self._class_values(predictions, n_rows, "predictions", "prediction")

    def _class_values(self, values: object, n_rows: int, field: str, one: str) -> np.ndarray:
        if not isinstance(values, list) or any(isinstance(value, list | dict) for value in values):
            raise invalid(f'"{field}" must be a flat list with one class {one} per row')
        if len(values) != n_rows:
            raise invalid(f'"{field}" has {len(values)} {one}(s) for {n_rows} row(s); give one per row')
        self._check_types(values, one)
        return np.asarray(values)

    def _check_types(self, values: list[object], one: str) -> None:
        """422 unless every value is of the classes' type: numbers for numeric classes, else strings.

        JSON null and booleans are never labels (numpy would compare true as the class 1).
        """
        kind = self.classes.dtype.kind if self.classes is not None else "O"
        numeric, strings = kind in "iuf", kind == "U"
        wanted: tuple[type, ...] = (int, float) if numeric else (str,) if strings else (int, float, str)
        for value in values:
            if type(value) not in wanted or (type(value) is int and not -(2**63) <= value < 2**64):
                names = "numbers" if numeric else "strings" if strings else "numbers or strings"
                known = (
                    "a class"
                    if self.classes is None
                    else f"one of the model's classes: {self._shown_classes()}"
                )
                raise invalid(
                    f"{one} {value!r} is not {known} "
                    f"({one}s are {names}; null, true and false are never {one}s)"
                )

    def _shown_classes(self) -> str:
        assert self.classes is not None
        return ", ".join(repr(label) for label in self.classes[:20].tolist())


def _transforms_inputs(estimator: Any) -> bool:
    """Whether `estimator` hands its input to other steps (pipelines, column transformers, ensembles)."""
    return any(
        hasattr(estimator, attribute) for attribute in ("steps", "transformers", "estimator", "estimators")
    )
