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


def test_the_cache_keeps_a_copy_so_a_row_of_a_batch_does_not_pin_the_batch() -> None:
    cache = PredictionCache(max_rows=10)
    batch_output = np.zeros(150_000, dtype=np.int64)  # 1.2 MB: the output of one shared predict call

    cache.remember("one-row", batch_output[7:8])

    kept = cache.predictions("one-row")
    assert kept.base is None
    assert kept.nbytes == 8
    assert not np.shares_memory(kept, batch_output)


@pytest.mark.parametrize("labelled", [True, False], ids=["labelled", "awaiting labels"])
def test_a_remembered_id_is_never_opened_again(labelled: bool) -> None:
    cache = PredictionCache(max_rows=10)
    cache.remember("client-7", np.array([0]))
    if labelled:
        cache.mark_labelled("client-7")

    with pytest.raises(ApiError) as error_info:
        cache.remember("client-7", np.array([1]))

    assert error_info.value.status == 409
    assert "give each request its own id" in error_info.value.message
    if labelled:
        with pytest.raises(ApiError, match="already has labels"):
            cache.predictions("client-7")
    else:
        np.testing.assert_array_equal(cache.predictions("client-7"), [0])


def test_a_shadow_candidate_keeps_the_stable_predictions_until_labelled_or_evicted() -> None:
    cache = PredictionCache(max_rows=3)
    cache.remember("mirrored", np.array([0, 1]), np.array([0, 2]))
    cache.remember("own", np.array([1]))

    np.testing.assert_array_equal(cache.stable_predictions("mirrored"), [0, 2])
    assert cache.stable_predictions("own") is None
    cache.mark_labelled("mirrored")
    assert cache.stable_predictions("mirrored") is None

    cache.remember("next", np.array([2]), np.array([2]))
    cache.remember("last", np.array([2, 2, 2]), np.array([1, 1, 1]))  # evicts all three before it
    assert ("next" in cache, cache.stable_predictions("next")) == (False, None)
