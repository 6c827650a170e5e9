"""Exact binomial tails and Clopper-Pearson bounds, standard library only.

The paired comparison (McNemar's exact test, `analysis.paired_difference_interval`) needs the
binomial distribution's tails and their inverse. SciPy has them, but the operator image should not
carry SciPy for two functions; `tests/unit/test_exact.py` checks these against it.

Counts may be fractional (the incomplete beta function is defined for real parameters), so a
count that Prometheus returns as 41.0000001 is judged as it is, not rejected.
"""

from __future__ import annotations

import math

_MAX_ITERATIONS = 100_000  # the continued fraction needs about sqrt(max(a, b)) terms
_EPSILON = 1e-15
_TINY = 1e-300
_BISECTION_STEPS = 100
_TOLERANCE = 1e-13


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and x in [0, 1]."""
    if a <= 0 or b <= 0 or not 0.0 <= x <= 1.0:
        raise ValueError(f"need a, b > 0 and 0 <= x <= 1; got x={x}, a={a}, b={b}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # The continued fraction converges fast on the side of the mode nearer x = 0; use the
    # symmetry I_x(a, b) = 1 - I_{1-x}(b, a) on the other side.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(1.0 - x, b, a) / b


def binomial_at_least(successes: float, trials: float, p: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, p)."""
    _check_counts(successes, trials)
    if successes <= 0:
        return 1.0
    return regularized_beta(p, successes, trials - successes + 1.0)


def binomial_at_most(successes: float, trials: float, p: float) -> float:
    """P(X <= successes) for X ~ Binomial(trials, p)."""
    _check_counts(successes, trials)
    if successes >= trials:
        return 1.0
    return 1.0 - regularized_beta(p, successes + 1.0, trials - successes)


def clopper_pearson(successes: float, trials: float, alpha: float) -> tuple[float, float]:
    """Exact bounds on a proportion, each one-sided at level 1 - alpha; (0, 1) with no trials.

    The lower bound is the smallest p that the exact binomial test does not reject at `alpha`
    (P(X >= successes) > alpha), the upper bound the largest (P(X <= successes) > alpha): the
    inversion of the exact test, so a bound and the test can never disagree.
    """
    _check_counts(successes, trials)
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if trials == 0:
        return 0.0, 1.0
    lower = 0.0 if successes <= 0 else _beta_quantile(alpha, successes, trials - successes + 1.0)
    upper = 1.0 if successes >= trials else _beta_quantile(1.0 - alpha, successes + 1.0, trials - successes)
    return lower, upper


def _beta_quantile(probability: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = probability, by bisection (I_x is increasing in x)."""
    low, high = 0.0, 1.0
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2.0
        if regularized_beta(middle, a, b) < probability:
            low = middle
        else:
            high = middle
        if high - low < _TOLERANCE:
            break
    return (low + high) / 2.0


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """Lentz's evaluation of the continued fraction of I_x(a, b) (Numerical Recipes, 6.4)."""
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    fraction = d
    for m in range(1, _MAX_ITERATIONS + 1):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            step = c * d
            fraction *= step
        if abs(step - 1.0) < _EPSILON:
            return fraction
    raise ArithmeticError(f"incomplete beta did not converge for x={x}, a={a}, b={b}")


def _check_counts(successes: float, trials: float) -> None:
    finite = math.isfinite(successes) and math.isfinite(trials)
    if not finite or trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, finite; got {successes} of {trials}")
