"""Exact binomial tails and Clopper-Pearson bounds (vigil_operator.exact), checked against SciPy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil_operator.exact import binomial_at_least, binomial_at_most, clopper_pearson, regularized_beta

stats = pytest.importorskip("scipy.stats")

trials_and_successes = st.integers(min_value=1, max_value=20_000).flatmap(
    lambda trials: st.tuples(st.integers(min_value=0, max_value=trials), st.just(trials))
)
probabilities = st.floats(min_value=1e-6, max_value=1 - 1e-6)


@given(trials_and_successes, probabilities)
def test_the_tails_match_scipy(count: tuple[int, int], p: float) -> None:
    successes, trials = count
    assert binomial_at_least(successes, trials, p) == pytest.approx(
        stats.binom.sf(successes - 1, trials, p), abs=1e-10
    )
    assert binomial_at_most(successes, trials, p) == pytest.approx(
        stats.binom.cdf(successes, trials, p), abs=1e-10
    )


@given(trials_and_successes, st.sampled_from([0.0025, 0.0225, 0.025, 0.05, 0.1]))
def test_clopper_pearson_matches_scipys_exact_interval(count: tuple[int, int], alpha: float) -> None:
    successes, trials = count
    reference = stats.binomtest(successes, trials).proportion_ci(1 - 2 * alpha, method="exact")
    lower, upper = clopper_pearson(successes, trials, alpha)
    assert lower == pytest.approx(reference.low, abs=1e-9)
    assert upper == pytest.approx(reference.high, abs=1e-9)


@given(trials_and_successes, st.sampled_from([0.0225, 0.05]))
def test_each_bound_is_where_the_exact_test_stops_rejecting(count: tuple[int, int], alpha: float) -> None:
    successes, trials = count
    lower, upper = clopper_pearson(successes, trials, alpha)
    if successes > 0:
        assert binomial_at_least(successes, trials, lower) == pytest.approx(alpha, rel=1e-6)
    if successes < trials:
        assert binomial_at_most(successes, trials, upper) == pytest.approx(alpha, rel=1e-6)


def test_the_regularized_beta_at_known_points() -> None:
    assert regularized_beta(0.0, 2.0, 3.0) == 0.0
    assert regularized_beta(1.0, 2.0, 3.0) == 1.0
    assert regularized_beta(0.5, 7.0, 7.0) == pytest.approx(0.5)
    assert regularized_beta(0.3, 1.0, 1.0) == pytest.approx(0.3)  # the uniform distribution
    assert regularized_beta(0.2, 2.5, 4.5) == pytest.approx(stats.beta.cdf(0.2, 2.5, 4.5), abs=1e-12)


def test_fractional_counts_lie_between_their_whole_neighbours() -> None:
    lower_40, _ = clopper_pearson(40, 100, 0.025)
    lower_half, _ = clopper_pearson(40.5, 100, 0.025)
    lower_41, _ = clopper_pearson(41, 100, 0.025)
    assert lower_40 < lower_half < lower_41


def test_no_trials_bound_nothing() -> None:
    assert clopper_pearson(0, 0, 0.025) == (0.0, 1.0)


def test_millions_of_trials_are_bounded_quickly_and_tightly() -> None:
    lower, upper = clopper_pearson(600_000, 10_000_000, 0.0025)
    assert lower < 0.06 < upper
    assert upper - lower < 0.0005


@pytest.mark.parametrize(
    ("successes", "trials", "alpha"),
    [(-1, 10, 0.05), (11, 10, 0.05), (5, float("nan"), 0.05), (5, 10, 0.0), (5, 10, 0.5)],
)
def test_impossible_input_is_refused(successes: float, trials: float, alpha: float) -> None:
    with pytest.raises(ValueError, match=r"need|alpha"):
        clopper_pearson(successes, trials, alpha)


def test_regularized_beta_refuses_parameters_outside_its_domain() -> None:
    with pytest.raises(ValueError, match="need a, b > 0"):
        regularized_beta(0.5, 0.0, 1.0)
    with pytest.raises(ValueError, match="need a, b > 0"):
        regularized_beta(1.5, 1.0, 1.0)
