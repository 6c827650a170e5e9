"""Protocol adapters and input checks: good documents become arrays, bad ones a 4xx that says why."""

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from vigil_model_server.errors import ApiError
from vigil_model_server.predictor import Predictor
from vigil_model_server.protocol import v1, v2

ROW = [5.1, 3.5, 1.4, 0.2]


def tensor(**overrides: object) -> dict[str, object]:
    return {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW} | overrides


def refusal(call: object, *args: object) -> ApiError:
    with pytest.raises(ApiError) as error_info:
        call(*args)  # type: ignore[operator]
    return error_info.value


@pytest.mark.parametrize("data", [[*ROW, *ROW], [ROW, ROW]], ids=["row-major flat data", "nested data"])
def test_an_infer_request_gives_rows_with_the_tensor_shape(data: list[object]) -> None:
    request = v2.parse_infer_request({"inputs": [tensor(shape=[2, 4], data=data)], "id": "r-1"})

    np.testing.assert_array_equal(request.rows, [ROW, ROW])
    assert request.rows.dtype == np.float64
    assert (request.outputs, request.request_id) == (("predict",), "r-1")


@pytest.mark.parametrize(
    ("datatype", "data"),
    [("INT8", [-128, 127, 0, 1]), ("UINT8", [0, 255, 1, 2]), ("FP32", [3.4e38, -3.4e38, 0.5, 1])],
)
def test_values_at_the_limits_of_their_datatype_are_accepted(datatype: str, data: list[float]) -> None:
    request = v2.parse_infer_request({"inputs": [tensor(datatype=datatype, data=data)]})

    np.testing.assert_array_equal(request.rows, [data])


def test_integer_data_in_an_integer_tensor_is_accepted() -> None:
    request = v2.parse_infer_request({"inputs": [tensor(datatype="INT32", data=[5, 3, 1, 0])]})

    np.testing.assert_array_equal(request.rows, [[5.0, 3.0, 1.0, 0.0]])


def test_requested_outputs_are_kept_in_order_without_repeats() -> None:
    outputs = [{"name": "predict_proba"}, {"name": "predict"}, {"name": "predict_proba"}]

    request = v2.parse_infer_request({"inputs": [tensor()], "outputs": outputs})

    assert request.outputs == ("predict_proba", "predict")


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ([tensor()], 400, "the body must be a JSON object"),
        ({"inputs": []}, 400, '"inputs" must be a non-empty list'),
        ({"inputs": [tensor(), tensor()]}, 422, "one input tensor of shape [rows, features], got 2"),
        ({"inputs": ["x"]}, 400, "each input must be an object"),
        ({"inputs": [tensor(shape=[1, -4])]}, 400, '"shape" must be a list of non-negative integers'),
        ({"inputs": [tensor(shape=[1, True])]}, 400, '"shape" must be a list of non-negative integers'),
        ({"inputs": [tensor(datatype="BYTES")]}, 422, "'BYTES' is not supported; use one of BOOL"),
        ({"inputs": [tensor(data="5.1,3.5")]}, 400, '"data" must be a JSON list'),
        ({"inputs": [tensor(data=[5.1, 3.5, 1.4, "0.2"])]}, 422, "FP64 needs numbers; data holds strings"),
        ({"inputs": [tensor(data=[5.1, 3.5, 1.4, None])]}, 422, "data holds nulls"),
        ({"inputs": [tensor(datatype="INT64")]}, 422, "INT64 needs integers; data holds decimal numbers"),
        ({"inputs": [tensor(datatype="UINT8", data=[1, 2, 3, -4])]}, 422, "UINT8 takes no negative values"),
        (
            {"inputs": [tensor(datatype="INT8", data=[1, 2, 3, 300])]},
            422,
            "INT8 holds values from -128 to 127",
        ),
        ({"inputs": [tensor(datatype="INT8", data=[1, 2, 3, -129])]}, 422, "data has -129"),
        (
            {"inputs": [tensor(datatype="UINT8", data=[1, 2, 3, 256])]},
            422,
            "UINT8 holds values from 0 to 255",
        ),
        ({"inputs": [tensor(datatype="INT16", data=[1, 2, 3, 40000])]}, 422, "INT16 holds values"),
        ({"inputs": [tensor(datatype="INT32", data=[1, 2, 3, 2**31])]}, 422, "INT32 holds values"),
        ({"inputs": [tensor(datatype="FP16", data=[1, 2, 3, 70000.0])]}, 422, "FP16 holds values"),
        ({"inputs": [tensor(datatype="FP32", data=[1, 2, 3, 1e300])]}, 422, "FP32 holds values"),
        ({"inputs": [tensor(datatype="BOOL")]}, 422, "BOOL needs true or false"),
        ({"inputs": [tensor(shape=[2, 4])]}, 422, "shape [2, 4] means 8 values but data holds 4"),
        ({"inputs": [tensor(shape=[1, 2, 2])]}, 422, "shape must be [rows, features]"),
        ({"inputs": [tensor(data=[[5.1, 3.5], [1.4]])]}, 422, "ragged"),
        ({"inputs": [tensor()], "outputs": ["predict"]}, 400, '"outputs" must be a list of objects'),
        ({"inputs": [tensor()], "id": 7}, 400, '"id" must be a string'),
    ],
)
def test_a_bad_infer_request_is_refused_with_the_reason(payload: object, status: int, message: str) -> None:
    error = refusal(v2.parse_infer_request, payload)

    assert error.status == status
    assert message in error.message


def test_v1_instances_become_rows() -> None:
    np.testing.assert_array_equal(v1.parse_predict_request({"instances": [ROW, ROW]}), [ROW, ROW])


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"inputs": [ROW]}, 400, 'like {"instances": [[5.1, 3.5, 1.4, 0.2]]}'),
        ({"instances": ROW}, 422, '"instances" must be a list of rows'),
        ({"instances": [["a", "b", "c", "d"]]}, 422, '"instances" must hold numbers; found strings'),
        ({"instances": [[True, False, True, False]]}, 422, "found booleans"),
        ({"instances": [[2**80, 1, 1, 1]]}, 422, "integers too large"),
    ],
)
def test_bad_v1_instances_are_refused_with_the_reason(payload: object, status: int, message: str) -> None:
    error = refusal(v1.parse_predict_request, payload)

    assert (error.status, message in error.message) == (status, True)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"instances": [ROW]}, "feedback must be a JSON object like"),
        ({"labels": [0]}, 'give either "instances" or "id"'),
        ({"labels": [0], "id": "a", "instances": [ROW]}, 'give either "instances" or "id"'),
        ({"labels": [0], "id": 12}, '"id" must be the string id'),
    ],
)
def test_a_feedback_document_needs_labels_and_either_rows_or_an_id(payload: object, message: str) -> None:
    error = refusal(v2.parse_feedback_request, payload)

    assert (error.status, message in error.message) == (400, True)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (np.ones((1, 3)), "each row needs 4 features, got 3"),
        (np.ones(4), "expected rows of features (a 2-D array)"),
        (np.ones((0, 4)), "no rows to predict"),
        (np.array([[1.0, np.nan, 1.0, 1.0]]), "NaN, infinity or null"),
        (np.array([[1.0, np.inf, 1.0, 1.0]]), "NaN, infinity or null"),
    ],
)
def test_rows_the_model_cannot_take_are_refused(
    classifier: LogisticRegression, rows: np.ndarray, message: str
) -> None:
    error = refusal(Predictor(classifier).check_rows, rows)

    assert (error.status, message in error.message) == (422, True)


def test_labels_must_be_the_model_classes_one_per_row(
    classifier: LogisticRegression, regressor: LinearRegression
) -> None:
    predictor = Predictor(classifier)

    np.testing.assert_array_equal(predictor.labels([0, 2], 2), [0, 2])
    assert "not one of the model's classes: 0, 1, 2" in refusal(predictor.labels, [0, 7], 2).message
    assert "has 1 label(s) for 2 row(s)" in refusal(predictor.labels, [0], 2).message
    assert "flat list" in refusal(predictor.labels, [[0], [1]], 2).message
    assert "needs a classifier" in refusal(Predictor(regressor).labels, [1.0], 1).message


def test_metadata_describes_the_input_width_and_both_outputs(classifier: LogisticRegression) -> None:
    metadata = v2.model_metadata("iris", "3", Predictor(classifier))

    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert metadata["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]


def test_class_names_are_sent_as_bytes_tensors() -> None:
    response = v2.infer_response(
        "m", "1", "id-1", {"predict": np.array(["setosa", "virginica"], dtype=object)}
    )

    assert response["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [2], "data": ["setosa", "virginica"]}
    ]


@pytest.mark.parametrize(
    "labels",
    [[None], [True], [False], [0, None], ["0"], [1.5], [2**70]],
    ids=["null", "true", "false", "a null among classes", "a string for a number", "a decimal", "huge"],
)
def test_labels_that_are_not_class_values_get_422(
    classifier: LogisticRegression, labels: list[object]
) -> None:
    error = refusal(Predictor(classifier).labels, labels, len(labels))

    assert error.status == 422
    assert "is not one of the model's classes: 0, 1, 2" in error.message


def test_a_whole_number_written_as_a_decimal_is_its_class(classifier: LogisticRegression) -> None:
    np.testing.assert_array_equal(Predictor(classifier).labels([2.0, 0], 2), [2, 0])


def test_string_classes_take_strings_only(iris: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = iris
    names = np.array(["setosa", "versicolor", "virginica"])[labels]
    predictor = Predictor(LogisticRegression(max_iter=1000).fit(features, names))

    np.testing.assert_array_equal(predictor.labels(["virginica"], 1), ["virginica"])
    assert "(labels are strings" in refusal(predictor.labels, [0], 1).message
    assert "(labels are strings" in refusal(predictor.labels, [None], 1).message
