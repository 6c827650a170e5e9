"""Ground truth: the bounded cache of recent predictions, and the rolling accuracy."""

import numpy as np
import pytest

from vigil_model_server.errors import ApiError
from vigil_model_server.feedback import AccuracyWindow, PredictionCache


def test_predictions_are_kept_until_newer_ones_exceed_the_row_budget() -> None:
    cache = PredictionCache(max_rows=5)
    cache.remember("a", np.array([0, 1]))
    cache.remember("b", np.array([2, 2]))
    cache.remember("c", np.array([1, 1]))

    np.testing.assert_array_equal(cache.predictions("c"), [1, 1])
    np.testing.assert_array_equal(cache.predictions("b"), [2, 2])
    with pytest.raises(ApiError) as error_info:
        cache.predictions("a")
    assert error_info.value.status == 404
    assert "older than the last 5 predicted rows (FEEDBACK_CACHE_SIZE)" in error_info.value.message


def test_a_response_larger_than_the_whole_cache_is_not_kept() -> None:
    cache = PredictionCache(max_rows=2)
    cache.remember("small", np.array([0]))
    cache.remember("big", np.array([0, 1, 2]))

    np.testing.assert_array_equal(cache.predictions("small"), [0])
    with pytest.raises(ApiError, match="no recent prediction has id 'big'"):
        cache.predictions("big")


def test_an_id_takes_labels_once() -> None:
    cache = PredictionCache(max_rows=10)
    cache.remember("a", np.array([0, 1]))
    cache.mark_labelled("a")

    with pytest.raises(ApiError) as error_info:
        cache.predictions("a")

    assert (error_info.value.status, "already has labels" in error_info.value.message) == (409, True)


def test_labelled_ids_count_against_the_budget_so_they_are_evicted_too() -> None:
    cache = PredictionCache(max_rows=3)
    for name in "abc":
        cache.remember(name, np.array([0]))
        cache.mark_labelled(name)
    cache.remember("d", np.array([1]))

    with pytest.raises(ApiError) as error_info:
        cache.predictions("a")
    assert error_info.value.status == 404


def test_accuracy_covers_only_the_last_window_of_labelled_rows() -> None:
    window = AccuracyWindow(size=4)

    assert window.add(np.array([True, True, False])) == pytest.approx(2 / 3)
    assert window.add(np.array([False, False])) == pytest.approx(1 / 4)  # the first True dropped out
    assert window.add(np.array([True] * 10)) == 1.0
