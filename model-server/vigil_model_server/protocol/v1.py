"""KServe V1 (TensorFlow Serving style) predict documents."""

from __future__ import annotations

from typing import Any

import numpy as np

from vigil_model_server.errors import malformed
from vigil_model_server.protocol.arrays import rows_from_instances


def parse_predict_request(payload: object) -> np.ndarray:
    """The rows of a `{"instances": [[...], ...]}` document; 400 or 422 with the reason if not one."""
    if type(payload) is not dict or "instances" not in payload:
        raise malformed('the body must be a JSON object like {"instances": [[5.1, 3.5, 1.4, 0.2]]}')
    return rows_from_instances(payload["instances"])


def predict_response(response_id: str, predictions: np.ndarray) -> dict[str, Any]:
    """The V1 predict response, with the id that feedback may refer to."""
    data: Any = predictions if predictions.dtype.kind in "biuf" else predictions.tolist()
    return {"predictions": data, "id": response_id}


def model_status(name: str, ready: bool) -> dict[str, Any]:
    """The V1 model status document."""
    return {"name": name, "ready": ready}
