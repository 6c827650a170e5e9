"""Fuzzing the running server with hypothesis: no document, however odd, gets a 5xx."""

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_server_harness import MODEL_NAME, MODEL_VERSION, ModelServer

POST_PATHS = [
    f"/v2/models/{MODEL_NAME}/infer",
    f"/v2/models/{MODEL_NAME}/versions/{MODEL_VERSION}/infer",
    f"/v2/models/{MODEL_NAME}/feedback",
    f"/v1/models/{MODEL_NAME}:predict",
]
DATATYPES = ["FP64", "FP32", "FP16", "INT64", "INT8", "UINT8", "UINT64", "BOOL", "BYTES", "STRING", ""]
JSON = {"content-type": "application/json"}
# A few hundred requests in all: enough to walk every branch of the parsers in seconds.
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=24,
)
numbers = st.one_of(
    st.integers(-5, 10), st.floats(-1e6, 1e6), st.floats(allow_nan=False, allow_infinity=False)
)
data = st.one_of(
    st.lists(numbers, max_size=12),
    st.lists(st.lists(numbers, min_size=0, max_size=5), max_size=4),
    st.lists(scalars, max_size=8),
    json_values,
)
tensors = st.fixed_dictionaries(
    {"shape": st.one_of(st.lists(st.integers(-2, 6), max_size=4), json_values), "data": data},
    optional={"name": st.text(max_size=8), "datatype": st.one_of(st.sampled_from(DATATYPES), json_values)},
)
v2_requests = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(tensors, max_size=2), json_values)},
    optional={
        "outputs": st.one_of(
            st.lists(st.fixed_dictionaries({"name": st.sampled_from(["predict", "predict_proba", "x"])})),
            json_values,
        ),
        "id": st.one_of(st.text(max_size=300), json_values),
    },
)
feedback_requests = st.fixed_dictionaries(
    {"labels": st.one_of(st.lists(st.one_of(st.integers(-1, 3), scalars), max_size=5), json_values)},
    optional={"instances": data, "id": st.one_of(st.text(max_size=12), json_values)},
)
documents = st.one_of(v2_requests, feedback_requests, st.fixed_dictionaries({"instances": data}), json_values)


def assert_answered_without_5xx(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]


@FUZZ
@given(path=st.sampled_from(POST_PATHS), document=documents)
def test_json_documents_get_an_answer_or_a_4xx(iris_server: ModelServer, path: str, document: object) -> None:
    response = iris_server.client.post(path, content=json.dumps(document, allow_nan=False), headers=JSON)

    assert_answered_without_5xx(response)


@FUZZ
@given(path=st.sampled_from(POST_PATHS), body=st.binary(max_size=300))
def test_arbitrary_bytes_get_a_4xx(iris_server: ModelServer, path: str, body: bytes) -> None:
    assert_answered_without_5xx(iris_server.client.post(path, content=body, headers=JSON))


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.one_of(
        st.sampled_from(["/v2", "/v2/health/ready", "/metrics", f"/v2/models/{MODEL_NAME}", *POST_PATHS]),
        st.text(alphabet="abcv12/:{}%.-_?&=", max_size=40).map(lambda text: "/" + text.lstrip("/")),
    ),
)
def test_any_method_on_any_path_gets_an_answer_or_a_4xx(
    iris_server: ModelServer, method: str, path: str
) -> None:
    assert_answered_without_5xx(iris_server.client.request(method, path))
