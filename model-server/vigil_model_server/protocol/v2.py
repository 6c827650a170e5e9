"""Open Inference Protocol (V2) REST documents, and Vigil's feedback document beside them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vigil_model_server.errors import invalid, malformed
from vigil_model_server.predictor import PREDICT, Predictor, v2_datatype
from vigil_model_server.protocol.arrays import kind_name, numbers, rows_from_instances

INPUT_NAME = "input-0"
MAX_ID_LENGTH = 256
_EXAMPLE = (
    '{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [[5.1, 3.5, 1.4, 0.2]]}]}'
)

# Which JSON values each tensor datatype takes, as numpy dtype kinds.
_KINDS_BY_DATATYPE = {
    "BOOL": "b",
    **{f"UINT{bits}": "iu" for bits in (8, 16, 32, 64)},
    **{f"INT{bits}": "iu" for bits in (8, 16, 32, 64)},
    **{f"FP{bits}": "iuf" for bits in (16, 32, 64)},
}


@dataclass(frozen=True)
class InferRequest:
    """What an infer request asks: rows, the outputs wanted, and the client's request id if any."""

    rows: np.ndarray
    outputs: tuple[str, ...]
    request_id: str | None


@dataclass(frozen=True)
class FeedbackRequest:
    """Labels, for rows to predict and score now or for the response with `response_id`."""

    labels: object
    rows: np.ndarray | None
    response_id: str | None


def parse_infer_request(payload: object) -> InferRequest:
    """An infer request from its JSON document; 400 or 422 with the reason if it is not one."""
    if type(payload) is not dict:
        raise malformed(f"the body must be a JSON object like {_EXAMPLE}")
    inputs = payload.get("inputs")
    if type(inputs) is not list or not inputs:
        raise malformed(f'"inputs" must be a non-empty list of tensors, like {_EXAMPLE}')
    if len(inputs) != 1:
        raise invalid(
            f"this model takes one input tensor of shape [rows, features], got {len(inputs)}; "
            "put all features of a row in one tensor"
        )
    return InferRequest(
        rows=rows_from_tensor(inputs[0]),
        outputs=_requested_outputs(payload.get("outputs")),
        request_id=_request_id(payload.get("id")),
    )


def rows_from_tensor(tensor: object) -> np.ndarray:
    """A V2 input tensor as a 2-D float array; checks shape, datatype and values against each other."""
    if type(tensor) is not dict:
        raise malformed(f"each input must be an object with shape, datatype and data, like {_EXAMPLE}")
    shape = tensor.get("shape")
    if type(shape) is not list or not all(type(size) is int and size >= 0 for size in shape):
        raise malformed('the input\'s "shape" must be a list of non-negative integers, like [1, 4]')
    datatype = tensor.get("datatype")
    if type(datatype) is not str or datatype not in _KINDS_BY_DATATYPE:
        supported = ", ".join(_KINDS_BY_DATATYPE)
        raise invalid(f'the input\'s "datatype" {datatype!r} is not supported; use one of {supported}')
    kinds = _KINDS_BY_DATATYPE[datatype]
    values = numbers(tensor.get("data"), 'the input\'s "data"')
    if values.dtype.kind not in kinds:
        needs = "true or false" if datatype == "BOOL" else "integers" if "INT" in datatype else "numbers"
        raise invalid(f"datatype {datatype} needs {needs}; data holds {kind_name(values.dtype.kind)}")
    _check_range(datatype, values)
    expected = math.prod(shape)
    if values.size != expected:
        raise invalid(f"shape {shape} means {expected} values but data holds {values.size}")
    if len(shape) != 2:
        raise invalid(f"shape must be [rows, features], like [1, 4]; got {shape}")
    return values.reshape(shape).astype(np.float64, copy=False)


def _check_range(datatype: str, values: np.ndarray) -> None:
    """422 if a value does not fit the tensor's datatype (300 in INT8, -1 in UINT8, 1e300 in FP32)."""
    if not values.size or datatype == "BOOL":
        return
    if datatype == "FP64":
        return  # JSON numbers beyond a double are refused when the body is parsed
    dtype = np.dtype(datatype.replace("FP", "float").replace("UINT", "uint").replace("INT", "int"))
    limits = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    smallest, largest = values.min(), values.max()
    if smallest < limits.min or largest > limits.max:
        if datatype.startswith("UINT") and smallest < 0:
            raise invalid(f"datatype {datatype} takes no negative values")
        raise invalid(
            f"datatype {datatype} holds values from {limits.min} to {limits.max}; "
            f"data has {smallest if smallest < limits.min else largest}"
        )


def _requested_outputs(outputs: object) -> tuple[str, ...]:
    if outputs is None:
        return (PREDICT,)
    if type(outputs) is not list or not all(type(o) is dict and type(o.get("name")) is str for o in outputs):
        raise malformed('"outputs" must be a list of objects with a "name", like [{"name": "predict_proba"}]')
    names = tuple(dict.fromkeys(output["name"] for output in outputs))
    return names or (PREDICT,)


def _request_id(request_id: object) -> str | None:
    if request_id is None:
        return None
    if type(request_id) is not str or not request_id or len(request_id) > MAX_ID_LENGTH:
        raise malformed(f'"id" must be a string of 1 to {MAX_ID_LENGTH} characters')
    return request_id


def parse_feedback_request(payload: object) -> FeedbackRequest:
    """A feedback document: `{"instances": [...], "labels": [...]}` or `{"id": ..., "labels": [...]}`."""
    usage = '{"instances": [[...]], "labels": [...]} or {"id": "<id of an infer response>", "labels": [...]}'
    if type(payload) is not dict or "labels" not in payload:
        raise malformed(f"feedback must be a JSON object like {usage}")
    has_rows, has_id = "instances" in payload, "id" in payload
    if has_rows == has_id:
        raise malformed(f'give either "instances" or "id" with the labels: {usage}')
    if has_rows:
        return FeedbackRequest(payload["labels"], rows_from_instances(payload["instances"]), None)
    response_id = payload["id"]
    if type(response_id) is not str:
        raise malformed('"id" must be the string id of an earlier infer response')
    return FeedbackRequest(payload["labels"], None, response_id)


def infer_response(
    name: str, version: str, response_id: str, outputs: dict[str, np.ndarray]
) -> dict[str, Any]:
    """The V2 infer response document."""
    return {
        "model_name": name,
        "model_version": version,
        "id": response_id,
        "outputs": [_tensor(output, values) for output, values in outputs.items()],
    }


def _tensor(name: str, values: np.ndarray) -> dict[str, Any]:
    datatype = v2_datatype(values.dtype)
    # orjson writes numeric arrays itself; other dtypes (class names) go as strings.
    data = values.ravel() if datatype != "BYTES" else [str(value) for value in values.ravel().tolist()]
    return {"name": name, "datatype": datatype, "shape": list(values.shape), "data": data}


def model_metadata(name: str, version: str, predictor: Predictor) -> dict[str, Any]:
    """The V2 model metadata document: inputs and outputs with datatype and shape."""
    width = predictor.n_features if predictor.n_features is not None else -1
    return {
        "name": name,
        "versions": [version],
        "platform": "sklearn",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP64", "shape": [-1, width]}],
        "outputs": predictor.output_metadata(),
    }
