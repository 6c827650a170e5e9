"""The verdict of one check and the streaks it feeds (vigil_operator.analysis)."""

from __future__ import annotations

import math
from dataclasses import astuple, replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from vigil_operator.analysis import (
    DISAGREEMENT_SHARE_OF_ERROR,
    CheckOutcome,
    ComparisonCriteria,
    Criteria,
    Measurement,
    PairedCounts,
    Streaks,
    Verdict,
    WatchParams,
    WatchState,
    judge,
    judge_paired,
    judge_shadow,
    next_streaks,
    paired_difference_interval,
    watch,
    watch_limit,
    wilson_interval,
)

ACCURACY = Criteria(threshold=0.90, min_samples=100, confidence=0.95, builtin=True)
CUSTOM = Criteria(threshold=0.90, min_samples=100, confidence=0.95, builtin=False)

counts = st.integers(min_value=1, max_value=100_000).flatmap(
    lambda total: st.tuples(st.integers(min_value=0, max_value=total), st.just(total))
)
confidences = st.floats(min_value=0.5, max_value=0.999)


def accuracy(correct: float, samples: float) -> CheckOutcome:
    return judge(Measurement(value=correct / samples, correct=correct, samples=samples), ACCURACY)


# --- the Wilson interval ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "total", "lower", "upper"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", table I.
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_published_values(
    correct: int, total: int, lower: float, upper: float
) -> None:
    got_lower, got_upper = wilson_interval(correct, total, 0.95)
    assert got_lower == pytest.approx(lower, abs=5e-5)
    assert got_upper == pytest.approx(upper, abs=5e-5)


def test_wilson_interval_matches_scipy_where_available() -> None:
    stats = pytest.importorskip("scipy.stats")
    for correct, total, confidence in [(84, 100, 0.95), (312, 340, 0.9), (7, 7, 0.99), (0, 3, 0.8)]:
        reference = stats.binomtest(correct, total).proportion_ci(confidence, method="wilson")
        assert wilson_interval(correct, total, confidence) == pytest.approx((reference.low, reference.high))


@given(counts, confidences)
def test_wilson_interval_contains_the_estimate_within_zero_one(
    count: tuple[int, int], confidence: float
) -> None:
    correct, total = count
    lower, upper = wilson_interval(correct, total, confidence)
    assert 0.0 <= lower <= correct / total <= upper <= 1.0


@given(counts, st.integers(min_value=2, max_value=50), confidences)
def test_wilson_interval_narrows_with_more_samples(
    count: tuple[int, int], factor: int, confidence: float
) -> None:
    correct, total = count
    lower, upper = wilson_interval(correct, total, confidence)
    more_lower, more_upper = wilson_interval(correct * factor, total * factor, confidence)
    assert more_upper - more_lower < upper - lower


@given(counts, confidences, confidences)
def test_wilson_interval_widens_with_confidence(count: tuple[int, int], first: float, second: float) -> None:
    assume(abs(first - second) > 1e-6)
    correct, total = count
    low_confidence, high_confidence = sorted((first, second))
    narrow_lower, narrow_upper = wilson_interval(correct, total, low_confidence)
    wide_lower, wide_upper = wilson_interval(correct, total, high_confidence)
    assert wide_lower <= narrow_lower
    assert wide_upper >= narrow_upper
    assert wide_upper - wide_lower > narrow_upper - narrow_lower


@given(counts, confidences)
def test_wilson_interval_is_symmetric_in_right_and_wrong(count: tuple[int, int], confidence: float) -> None:
    correct, total = count
    lower, upper = wilson_interval(correct, total, confidence)
    wrong_lower, wrong_upper = wilson_interval(total - correct, total, confidence)
    assert lower == pytest.approx(1.0 - wrong_upper, abs=1e-12)
    assert upper == pytest.approx(1.0 - wrong_lower, abs=1e-12)


def test_wilson_interval_at_the_extremes_stays_inside_zero_one() -> None:
    assert wilson_interval(0, 500, 0.95)[0] == 0.0
    assert wilson_interval(500, 500, 0.95)[1] == 1.0
    assert wilson_interval(500, 500, 0.95)[0] < 1.0


def test_wilson_interval_with_no_data_is_everything() -> None:
    assert wilson_interval(0, 0, 0.95) == (0.0, 1.0)


def test_wilson_interval_accepts_fractional_counts_from_prometheus_increase() -> None:
    lower, upper = wilson_interval(90.4, 100.6, 0.95)
    assert lower < 90.4 / 100.6 < upper


@pytest.mark.parametrize(
    ("correct", "total", "confidence"),
    [
        (11, 10, 0.95),
        (-1, 10, 0.95),
        (1, -1, 0.95),
        (math.nan, 10, 0.95),
        (1, math.inf, 0.95),
        (5, 10, 0.0),
        (5, 10, 1.0),
        (5, 10, 1.5),
    ],
)
def test_wilson_interval_rejects_impossible_input(correct: float, total: float, confidence: float) -> None:
    with pytest.raises(ValueError, match=r"correct|confidence"):
        wilson_interval(correct, total, confidence)


# --- judge: the built-in accuracy metric -----------------------------------------------------


def test_a_clearly_bad_model_fails_with_the_numbers_in_the_reason() -> None:
    outcome = accuracy(263, 312)
    assert outcome.verdict is Verdict.FAIL
    assert outcome.upper is not None
    assert outcome.upper < 0.90
    assert outcome.value == pytest.approx(263 / 312)
    assert outcome.samples == 312
    assert outcome.reason.startswith("accuracy 0.843 (95% interval ")
    assert "< threshold 0.90 over 312 labelled predictions" in outcome.reason


def test_a_clearly_good_model_passes_at_the_first_check() -> None:
    outcome = accuracy(97, 100)
    assert outcome.verdict is Verdict.PASS
    assert outcome.lower is not None
    assert outcome.lower >= 0.90
    assert ">= threshold 0.90 over 100 labelled predictions" in outcome.reason


@pytest.mark.parametrize(("correct", "samples"), [(90, 100), (88, 100), (92, 100), (905, 1000)])
def test_an_interval_straddling_the_threshold_is_inconclusive(correct: int, samples: int) -> None:
    outcome = accuracy(correct, samples)
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert outcome.lower is not None
    assert outcome.upper is not None
    assert outcome.lower < 0.90 <= outcome.upper
    assert "too close to threshold 0.90 to tell" in outcome.reason


def test_a_point_estimate_below_the_threshold_alone_does_not_fail() -> None:
    # What the naive rule would fail: 85 of 100 is below 0.90, but not beyond doubt.
    outcome = accuracy(86, 100)
    assert outcome.value is not None
    assert outcome.value < 0.90
    assert outcome.verdict is Verdict.INCONCLUSIVE


def test_the_same_accuracy_fails_once_evidence_accumulates() -> None:
    assert accuracy(86, 100).verdict is Verdict.INCONCLUSIVE
    assert accuracy(860, 1000).verdict is Verdict.FAIL


def test_the_same_accuracy_passes_once_evidence_accumulates() -> None:
    assert accuracy(93, 100).verdict is Verdict.INCONCLUSIVE
    assert accuracy(930, 1000).verdict is Verdict.PASS


def test_fewer_than_min_samples_is_inconclusive_even_when_all_wrong() -> None:
    outcome = accuracy(0, 99)
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert outcome.samples == 99
    assert outcome.reason.startswith("only 99 labelled predictions, 100 needed")


def test_exactly_min_samples_gives_a_verdict() -> None:
    assert accuracy(0, 100).verdict is Verdict.FAIL
    assert accuracy(100, 100).verdict is Verdict.PASS


def test_no_labelled_predictions_is_inconclusive_even_without_min_samples() -> None:
    criteria = Criteria(threshold=0.9, min_samples=0, confidence=0.95, builtin=True)
    outcome = judge(Measurement(value=None, correct=0.0, samples=0.0), criteria)
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert outcome.value is None
    assert outcome.reason == "no labelled predictions yet, so no verdict"


def test_lower_bound_exactly_at_threshold_passes() -> None:
    lower, _ = wilson_interval(95, 100, 0.95)
    criteria = Criteria(threshold=lower, min_samples=100, confidence=0.95, builtin=True)
    assert judge(Measurement(correct=95, samples=100), criteria).verdict is Verdict.PASS


def test_upper_bound_exactly_at_threshold_does_not_fail() -> None:
    _, upper = wilson_interval(80, 100, 0.95)
    at_bound = Criteria(threshold=upper, min_samples=100, confidence=0.95, builtin=True)
    just_above = Criteria(
        threshold=math.nextafter(upper, 1.0), min_samples=100, confidence=0.95, builtin=True
    )
    assert judge(Measurement(correct=80, samples=100), at_bound).verdict is Verdict.INCONCLUSIVE
    assert judge(Measurement(correct=80, samples=100), just_above).verdict is Verdict.FAIL


def test_higher_confidence_needs_more_evidence_to_fail() -> None:
    measurement = Measurement(correct=83, samples=100)
    assert judge(measurement, ACCURACY).verdict is Verdict.FAIL
    strict = Criteria(threshold=0.90, min_samples=100, confidence=0.999, builtin=True)
    assert judge(measurement, strict).verdict is Verdict.INCONCLUSIVE


def test_counts_win_over_the_reported_value() -> None:
    outcome = judge(Measurement(value=0.99, correct=80, samples=100), ACCURACY)
    assert outcome.value == pytest.approx(0.80)
    assert outcome.verdict is Verdict.FAIL


def test_correct_is_recovered_from_the_value_when_missing() -> None:
    outcome = judge(Measurement(value=0.80, samples=400), ACCURACY)
    assert outcome.value == pytest.approx(0.80)
    assert outcome.verdict is Verdict.FAIL


def test_fractional_counts_from_increase_are_judged() -> None:
    outcome = judge(Measurement(correct=380.7, samples=400.2), ACCURACY)
    assert outcome.verdict is Verdict.PASS
    assert "over 400 labelled predictions" in outcome.reason


def test_floating_point_noise_above_samples_is_tolerated() -> None:
    outcome = judge(Measurement(correct=400.00000000001, samples=400.0), ACCURACY)
    assert outcome.verdict is Verdict.PASS
    assert outcome.value == 1.0


@given(
    st.integers(min_value=0, max_value=5000).flatmap(
        lambda samples: st.tuples(st.integers(min_value=0, max_value=samples), st.just(samples))
    ),
    st.floats(min_value=0.0, max_value=1.0),
    st.integers(min_value=0, max_value=1000),
    confidences,
)
def test_builtin_verdicts_agree_with_the_interval(
    count: tuple[int, int], threshold: float, min_samples: int, confidence: float
) -> None:
    correct, samples = count
    criteria = Criteria(threshold=threshold, min_samples=min_samples, confidence=confidence, builtin=True)
    outcome = judge(Measurement(correct=correct, samples=samples), criteria)
    assert outcome.verdict is not Verdict.ERROR
    assert outcome.reason
    if samples == 0 or samples < min_samples:
        assert outcome.verdict is Verdict.INCONCLUSIVE
        return
    lower, upper = wilson_interval(correct, samples, confidence)
    assert (outcome.lower, outcome.upper) == (lower, upper)
    expected = (
        Verdict.FAIL if upper < threshold else Verdict.PASS if lower >= threshold else Verdict.INCONCLUSIVE
    )
    assert outcome.verdict is expected


# --- judge: errors never become a verdict on the model -----------------------------------------


@pytest.mark.parametrize(
    ("measurement", "reason_part"),
    [
        (Measurement(error="connection refused"), "metrics unavailable: connection refused"),
        (Measurement(value=0.99, correct=99, samples=100, error="timeout"), "metrics unavailable: timeout"),
        (Measurement(value=0.95, correct=95, samples=None), "no usable count"),
        (Measurement(value=0.95, correct=95, samples=math.nan), "no usable count"),
        (Measurement(value=0.95, correct=95, samples=math.inf), "no usable count"),
        (Measurement(value=0.95, correct=95, samples=-1), "no usable count"),
        (Measurement(value=None, correct=None, samples=100), "no usable accuracy"),
        (Measurement(value=math.nan, correct=None, samples=100), "no usable accuracy"),
        (Measurement(value=math.inf, correct=None, samples=100), "no usable accuracy"),
        (Measurement(correct=math.nan, samples=100), "inconsistent counters"),
        (Measurement(correct=-3, samples=100), "inconsistent counters"),
        (Measurement(correct=101, samples=100), "inconsistent counters"),
    ],
)
def test_builtin_errors(measurement: Measurement, reason_part: str) -> None:
    outcome = judge(measurement, ACCURACY)
    assert outcome.verdict is Verdict.ERROR
    assert reason_part in outcome.reason
    assert (outcome.value, outcome.samples, outcome.lower, outcome.upper) == (None, None, None, None)


@pytest.mark.parametrize(
    ("measurement", "reason"),
    [
        (Measurement(error="no series"), "metrics unavailable: no series"),
        (Measurement(value=None), "the query returned no value"),
        (Measurement(value=math.nan), "the query returned nan"),
        (Measurement(value=math.inf), "the query returned inf"),
        (Measurement(value=-math.inf), "the query returned -inf"),
    ],
)
def test_custom_query_errors(measurement: Measurement, reason: str) -> None:
    outcome = judge(measurement, CUSTOM)
    assert outcome.verdict is Verdict.ERROR
    assert outcome.reason == reason


# --- judge: a custom query -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "verdict", "reason"),
    [
        (0.95, Verdict.PASS, "value 0.95 >= threshold 0.90"),
        (0.90, Verdict.PASS, "value 0.9 >= threshold 0.90"),
        (math.nextafter(0.90, 0.0), Verdict.FAIL, "value 0.9 < threshold 0.90"),
        (0.12, Verdict.FAIL, "value 0.12 < threshold 0.90"),
        (1.5, Verdict.PASS, "value 1.5 >= threshold 0.90"),
    ],
)
def test_custom_query_compares_the_value_with_the_threshold(
    value: float, verdict: Verdict, reason: str
) -> None:
    outcome = judge(Measurement(value=value), CUSTOM)
    assert outcome.verdict is verdict
    assert outcome.value == value
    assert outcome.reason == reason
    assert (outcome.samples, outcome.lower, outcome.upper) == (None, None, None)


def test_custom_query_ignores_min_samples_and_counts() -> None:
    outcome = judge(Measurement(value=0.95, correct=1, samples=1), CUSTOM)
    assert outcome.verdict is Verdict.PASS
    assert outcome.samples is None


def test_custom_query_may_use_a_threshold_outside_zero_one() -> None:
    criteria = Criteria(threshold=250.0, min_samples=0, confidence=0.95, builtin=False)
    assert judge(Measurement(value=300.0), criteria).verdict is Verdict.PASS
    assert judge(Measurement(value=200.0), criteria).reason == "value 200 < threshold 250.00"


@pytest.mark.parametrize(
    ("threshold", "shown"),
    [(0.9, "0.90"), (0.95, "0.95"), (0.925, "0.925"), (1.0, "1.00"), (0.0, "0.00")],
)
def test_thresholds_are_shown_as_people_write_them(threshold: float, shown: str) -> None:
    criteria = Criteria(threshold=threshold, min_samples=0, confidence=0.95, builtin=False)
    assert judge(Measurement(value=0.5), criteria).reason.endswith(f"threshold {shown}")


# --- criteria that the CRD should have rejected ------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "min_samples", "confidence", "builtin", "message"),
    [
        (1.1, 100, 0.95, True, "threshold must be in"),
        (-0.1, 100, 0.95, True, "threshold must be in"),
        (math.nan, 100, 0.95, True, "finite"),
        (math.inf, 100, 0.95, False, "finite"),
        (0.9, -1, 0.95, True, "min_samples"),
        (0.9, 100, 0.0, True, "confidence"),
        (0.9, 100, 1.0, True, "confidence"),
    ],
)
def test_criteria_reject_impossible_settings(
    threshold: float, min_samples: int, confidence: float, builtin: bool, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Criteria(threshold=threshold, min_samples=min_samples, confidence=confidence, builtin=builtin)


# --- streaks -----------------------------------------------------------------------------------

FAIL, PASS, UNSURE, ERR = Verdict.FAIL, Verdict.PASS, Verdict.INCONCLUSIVE, Verdict.ERROR


@pytest.mark.parametrize(
    ("previous", "verdict", "expected"),
    [
        (Streaks(), FAIL, Streaks(failures=1)),
        (Streaks(), PASS, Streaks(passes=1)),
        (Streaks(), UNSURE, Streaks()),
        (Streaks(), ERR, Streaks(errors=1)),
        # A fail breaks a pass streak and ends an error streak; a pass does the reverse.
        (Streaks(failures=2, errors=3), FAIL, Streaks(failures=3)),
        (Streaks(passes=2, errors=3), FAIL, Streaks(failures=1)),
        (Streaks(passes=2, errors=3), PASS, Streaks(passes=3)),
        (Streaks(failures=2, errors=3), PASS, Streaks(passes=1)),
        # Inconclusive is neutral for fails and passes, and shows that metrics flow again.
        (Streaks(failures=2), UNSURE, Streaks(failures=2)),
        (Streaks(passes=2), UNSURE, Streaks(passes=2)),
        (Streaks(failures=1, errors=4), UNSURE, Streaks(failures=1)),
        # An error counts towards errorLimit only.
        (Streaks(failures=2), ERR, Streaks(failures=2, errors=1)),
        (Streaks(passes=2, errors=4), ERR, Streaks(passes=2, errors=5)),
    ],
)
def test_next_streaks(previous: Streaks, verdict: Verdict, expected: Streaks) -> None:
    assert next_streaks(previous, verdict) == expected


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([FAIL, FAIL, FAIL], Streaks(failures=3)),
        ([FAIL, UNSURE, FAIL, UNSURE, FAIL], Streaks(failures=3)),
        ([FAIL, ERR, ERR, FAIL, FAIL], Streaks(failures=3)),
        ([FAIL, FAIL, PASS, FAIL], Streaks(failures=1)),
        ([PASS, PASS, FAIL, PASS], Streaks(passes=1)),
        ([PASS, UNSURE, UNSURE, PASS, ERR, PASS], Streaks(passes=3)),
        ([ERR, ERR, ERR, UNSURE, ERR], Streaks(errors=1)),
        ([ERR, ERR, ERR, ERR, ERR], Streaks(errors=5)),
    ],
)
def test_streak_sequences(verdicts: list[Verdict], expected: Streaks) -> None:
    streaks = Streaks()
    for verdict in verdicts:
        streaks = next_streaks(streaks, verdict)
    assert streaks == expected


@given(st.lists(st.sampled_from(list(Verdict)), max_size=40))
def test_streaks_never_hold_fails_and_passes_at_once(verdicts: list[Verdict]) -> None:
    streaks = Streaks()
    for verdict in verdicts:
        streaks = next_streaks(streaks, verdict)
        assert streaks.failures == 0 or streaks.passes == 0
        assert min(streaks.failures, streaks.passes, streaks.errors) >= 0


def test_next_streaks_does_not_change_the_previous_value() -> None:
    previous = Streaks(failures=1)
    next_streaks(previous, FAIL)
    assert previous == Streaks(failures=1)


# --- the watch of a promoted version (Bernoulli CUSUM) --------------------------------------------

WATCH = WatchParams(threshold=0.90, drop=0.05)
RIGHT, WRONG = math.log(0.85 / 0.90), math.log(0.15 / 0.10)  # evidence of one label, in nats


def labels(correct: float, samples: float) -> Measurement:
    return Measurement(value=correct / samples if samples else None, correct=correct, samples=samples)


def test_the_watch_adds_the_log_likelihood_ratio_of_every_new_label() -> None:
    outcome, state = watch(labels(8, 10), WATCH, WatchState(), 30.0)
    assert state.statistic == pytest.approx(8 * RIGHT + 2 * WRONG)
    assert (state.samples, state.seconds) == (10, 30.0)
    assert outcome.verdict is Verdict.PASS
    assert not outcome.breach
    assert outcome.reason == (
        "accuracy 0.800 over 10 new labelled predictions; "
        f"evidence of a drop below 0.90: {state.statistic:.2f} of 10.00"
    )


def test_the_watch_statistic_never_goes_below_zero() -> None:
    """A long healthy past must not hide a later drop: evidence restarts from zero, not below."""
    state = WatchState()
    for _ in range(1000):
        _, state = watch(labels(10, 10), WATCH, state, 30.0)
    assert state.statistic == 0.0
    checks_to_breach = 0
    outcome = None
    while outcome is None or not outcome.breach:
        outcome, state = watch(labels(7, 10), WATCH, state, 30.0)
        checks_to_breach += 1
    per_check = 7 * RIGHT + 3 * WRONG
    assert checks_to_breach == math.ceil(10.0 / per_check)


def test_small_drops_build_evidence_over_several_checks_before_a_breach() -> None:
    state = WatchState()
    verdicts = []
    for _ in range(40):  # 0.85 exactly: +0.122 nats per 10 labels
        outcome, state = watch(labels(85, 100), WATCH, state, 300.0)
        verdicts.append(outcome.verdict)
        if outcome.breach:
            break
    assert verdicts[-1] is Verdict.FAIL
    assert all(v is Verdict.PASS for v in verdicts[:-1])
    assert 5 < len(verdicts) < 40
    assert "accuracy has dropped" in outcome.reason


def test_a_clear_collapse_breaches_in_one_check() -> None:
    outcome, state = watch(labels(60, 100), WATCH, WatchState(), 30.0)
    assert outcome.verdict is Verdict.FAIL
    assert outcome.breach
    assert state.statistic >= watch_limit(WATCH, state)


def test_no_new_labels_is_inconclusive_and_keeps_the_evidence() -> None:
    before = WatchState(statistic=4.0, samples=100, seconds=300)
    outcome, state = watch(labels(0, 0), WATCH, before, 30.0)
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert (state.statistic, state.samples, state.seconds) == (4.0, 100, 330)


@pytest.mark.parametrize(
    "measurement",
    [Measurement(error="connection refused"), Measurement(samples=None), labels(11, 10)],
)
def test_errors_leave_the_watch_as_it_was(measurement: Measurement) -> None:
    before = WatchState(statistic=4.0, samples=100, seconds=300)
    outcome, state = watch(measurement, WATCH, before, 30.0)
    assert outcome.verdict is Verdict.ERROR
    assert state == before


def test_the_limit_grows_with_the_log_of_the_label_rate_and_never_shrinks() -> None:
    reference = WATCH.reference_rate
    assert watch_limit(WATCH, WatchState()) == 10.0
    assert watch_limit(WATCH, WatchState(samples=reference * 300, seconds=300)) == pytest.approx(10.0)
    assert watch_limit(WATCH, WatchState(samples=reference * 1200, seconds=300)) == pytest.approx(
        10.0 + math.log(4)
    )
    assert watch_limit(WATCH, WatchState(samples=1, seconds=300)) == 10.0


@pytest.mark.parametrize("threshold", [0.0, 0.03, 0.5, 0.99, 1.0])
def test_the_watch_is_finite_at_any_threshold(threshold: float) -> None:
    params = WatchParams(threshold=threshold)
    outcome, state = watch(labels(5, 10), params, WatchState(), 30.0)
    assert math.isfinite(state.statistic)
    assert outcome.verdict in (Verdict.PASS, Verdict.FAIL)


@given(
    st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=60),
    st.floats(min_value=0.5, max_value=0.99),
)
def test_the_watch_state_is_never_negative_and_counts_every_label(
    checks: list[tuple[int, int]], threshold: float
) -> None:
    params = WatchParams(threshold=threshold)
    state = WatchState()
    for right, wrong in checks:
        _, state = watch(labels(right, right + wrong), params, state, 30.0)
        assert state.statistic >= 0.0
    assert state.samples == sum(right + wrong for right, wrong in checks)


@pytest.mark.parametrize(("drop", "limit", "rate"), [(0.0, 10, 1), (1.0, 10, 1), (0.05, 0, 1), (0.05, 10, 0)])
def test_watch_params_reject_impossible_settings(drop: float, limit: float, rate: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        WatchParams(threshold=0.9, drop=drop, limit=limit, reference_rate=rate)


# --- the paired comparison of a shadow candidate -------------------------------------------------

COMPARISON = ComparisonCriteria(margin=0.01, min_samples=100, confidence=0.95)

paired_counts = st.builds(
    PairedCounts,
    both_right=st.integers(min_value=0, max_value=50_000),
    both_wrong=st.integers(min_value=0, max_value=5_000),
    only_stable_right=st.integers(min_value=0, max_value=2_000),
    only_candidate_right=st.integers(min_value=0, max_value=2_000),
)


def paired(both_right: int, both_wrong: int, only_stable: int, only_candidate: int) -> PairedCounts:
    return PairedCounts(both_right, both_wrong, only_stable, only_candidate)


def test_paired_counts_add_up_and_give_the_difference_in_accuracy() -> None:
    counts = paired(900, 50, 30, 20)
    assert counts.samples == 1000
    assert counts.discordant == 50
    stable_accuracy, candidate_accuracy = (900 + 30) / 1000, (900 + 20) / 1000
    assert counts.difference == pytest.approx(candidate_accuracy - stable_accuracy)
    assert PairedCounts().difference is None


@given(paired_counts, confidences)
def test_the_paired_interval_contains_the_observed_difference(
    counts: PairedCounts, confidence: float
) -> None:
    lower, upper = paired_difference_interval(counts, confidence)
    if counts.samples == 0:
        assert (lower, upper) == (-1.0, 1.0)
        return
    assert counts.difference is not None
    assert -1.0 <= lower <= counts.difference + 1e-12
    assert counts.difference - 1e-12 <= upper <= 1.0


@given(paired_counts, st.integers(min_value=1, max_value=500))
def test_a_disagreement_won_by_the_candidate_raises_both_bounds(counts: PairedCounts, moved: int) -> None:
    assume(counts.only_stable_right >= moved)
    better = replace(
        counts,
        only_stable_right=counts.only_stable_right - moved,
        only_candidate_right=counts.only_candidate_right + moved,
    )
    lower, upper = paired_difference_interval(counts, 0.95)
    better_lower, better_upper = paired_difference_interval(better, 0.95)
    assert better_lower >= lower - 1e-12
    assert better_upper >= upper - 1e-12


@given(paired_counts)
def test_the_paired_interval_is_symmetric_in_the_two_versions(counts: PairedCounts) -> None:
    swapped = replace(
        counts, only_stable_right=counts.only_candidate_right, only_candidate_right=counts.only_stable_right
    )
    lower, upper = paired_difference_interval(counts, 0.95)
    swapped_lower, swapped_upper = paired_difference_interval(swapped, 0.95)
    assert lower == pytest.approx(-swapped_upper, abs=1e-9)
    assert upper == pytest.approx(-swapped_lower, abs=1e-9)


@given(paired_counts, st.integers(min_value=2, max_value=20))
def test_the_paired_interval_narrows_with_more_evidence(counts: PairedCounts, factor: int) -> None:
    assume(counts.discordant > 0)
    more = PairedCounts(*(count * factor for count in astuple(counts)))
    lower, upper = paired_difference_interval(counts, 0.95)
    more_lower, more_upper = paired_difference_interval(more, 0.95)
    assert more_upper - more_lower < upper - lower


@given(paired_counts)
def test_concordant_pairs_only_scale_the_disagreements_they_dilute(counts: PairedCounts) -> None:
    """Ids both got right or both got wrong carry no evidence on which version is better."""
    assume(counts.samples > 0)
    lower, upper = paired_difference_interval(counts, 0.95)
    if counts.discordant == 0:
        assert lower < 0 < upper
        return
    for_the_candidate = counts.only_candidate_right >= counts.only_stable_right
    assert (upper > 0) if for_the_candidate else (lower < 0)


@given(st.integers(min_value=1, max_value=400), st.integers(min_value=0, max_value=400))
def test_at_margin_zero_the_verdict_is_mcnemars_exact_test(only_stable: int, only_candidate: int) -> None:
    """With no margin, FAIL and PASS are McNemar's one-sided exact tests at the check's level."""
    stats = pytest.importorskip("scipy.stats")
    counts = paired(5_000, 300, only_stable, only_candidate)
    criteria = ComparisonCriteria(margin=0.0, min_samples=100, confidence=0.95)
    level = 0.025 * (1 - DISAGREEMENT_SHARE_OF_ERROR)
    disagreements = only_stable + only_candidate
    worse = stats.binomtest(only_candidate, disagreements, 0.5, alternative="less").pvalue
    better = stats.binomtest(only_candidate, disagreements, 0.5, alternative="greater").pvalue
    assume(min(abs(worse - level), abs(better - level)) > 1e-6)  # not exactly at the boundary
    verdict = judge_paired(counts, criteria).verdict
    assert (verdict is Verdict.FAIL) == (worse <= level)
    assert (verdict is Verdict.PASS) == (better <= level)


def test_an_equally_good_candidate_passes_with_enough_disagreements_labelled() -> None:
    outcome = judge_paired(paired(9_000, 500, 300, 290), COMPARISON)
    assert outcome.verdict is Verdict.PASS
    assert outcome.value == pytest.approx(-10 / 10_090)
    assert outcome.samples == 10_090
    assert outcome.lower is not None
    assert outcome.lower >= -0.01
    assert ">= margin -0.01 over 10090 ids labelled for both (590 where they disagree)" in outcome.reason


def test_a_candidate_clearly_worse_than_the_margin_fails_with_the_numbers_in_the_reason() -> None:
    outcome = judge_paired(paired(9_000, 500, 400, 150), COMPARISON)
    assert outcome.verdict is Verdict.FAIL
    assert outcome.upper is not None
    assert outcome.upper < -0.01
    assert "candidate minus stable accuracy -0.0249" in outcome.reason
    assert "< margin -0.01" in outcome.reason
    assert "worse than the stable release" in outcome.reason


def test_a_candidate_worse_but_within_the_margin_is_not_failed() -> None:
    # 0.5 points worse on 20,000 ids: clearly worse than the stable release, clearly within 0.01.
    outcome = judge_paired(paired(18_000, 1_000, 550, 450), COMPARISON)
    assert outcome.value == pytest.approx(-0.005)
    assert outcome.verdict is Verdict.PASS


def test_a_difference_near_the_margin_is_inconclusive() -> None:
    outcome = judge_paired(paired(9_000, 500, 350, 250), COMPARISON)
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert "too close to margin -0.01 to tell" in outcome.reason


def test_no_disagreement_on_few_ids_is_not_yet_proof() -> None:
    """The rate of disagreement is bounded too: 0 of 100 does not show that it is below the margin."""
    outcome = judge_paired(paired(95, 5, 0, 0), COMPARISON)
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert judge_paired(paired(1_900, 100, 0, 0), COMPARISON).verdict is Verdict.PASS


def test_fewer_paired_ids_than_min_samples_is_inconclusive_even_when_the_candidate_loses_all() -> None:
    outcome = judge_paired(paired(40, 5, 40, 0), COMPARISON)
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert "only 85 ids labelled for both, 100 needed" in outcome.reason


def test_no_paired_ids_is_inconclusive() -> None:
    outcome = judge_paired(PairedCounts(), COMPARISON)
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert outcome.value is None


@pytest.mark.parametrize(
    ("counts", "reason_part"),
    [
        (None, "no paired counts"),
        (PairedCounts(both_right=-1.0), "unusable paired counts"),
        (PairedCounts(only_stable_right=math.inf), "unusable paired counts"),
        (PairedCounts(both_wrong=math.nan), "unusable paired counts"),
    ],
)
def test_unusable_paired_counts_are_errors(counts: PairedCounts | None, reason_part: str) -> None:
    outcome = judge_paired(counts, COMPARISON)
    assert outcome.verdict is Verdict.ERROR
    assert reason_part in outcome.reason


@given(paired_counts, st.floats(min_value=0.0, max_value=0.2))
def test_paired_verdicts_agree_with_the_interval_and_the_margin(counts: PairedCounts, margin: float) -> None:
    criteria = ComparisonCriteria(margin=margin, min_samples=100, confidence=0.95)
    outcome = judge_paired(counts, criteria)
    if counts.samples < 100:
        assert outcome.verdict is Verdict.INCONCLUSIVE
        return
    assert outcome.lower is not None
    assert outcome.upper is not None
    expected = (
        Verdict.FAIL
        if outcome.upper < -margin
        else Verdict.PASS
        if outcome.lower >= -margin
        else Verdict.INCONCLUSIVE
    )
    assert outcome.verdict is expected


@given(paired_counts, st.floats(min_value=0.0, max_value=0.1), st.floats(min_value=0.0, max_value=0.1))
def test_a_wider_margin_never_turns_a_pass_into_a_fail(
    counts: PairedCounts, first: float, second: float
) -> None:
    narrow, wide = sorted((first, second))
    order = {Verdict.FAIL: 0, Verdict.INCONCLUSIVE: 1, Verdict.PASS: 2}
    narrow_verdict = judge_paired(counts, ComparisonCriteria(narrow, 100, 0.95)).verdict
    wide_verdict = judge_paired(counts, ComparisonCriteria(wide, 100, 0.95)).verdict
    assert order[wide_verdict] >= order[narrow_verdict]


@pytest.mark.parametrize(
    ("margin", "min_samples", "confidence"),
    [(-0.01, 100, 0.95), (1.0, 100, 0.95), (math.nan, 100, 0.95), (0.01, -1, 0.95), (0.01, 100, 1.0)],
)
def test_comparison_criteria_reject_impossible_settings(
    margin: float, min_samples: int, confidence: float
) -> None:
    with pytest.raises(ValueError, match=r"margin|min_samples|confidence"):
        ComparisonCriteria(margin=margin, min_samples=min_samples, confidence=confidence)


# --- a shadow check: the threshold and the margin -------------------------------------------------

GOOD_OWN_LABELS = {"value": 0.97, "correct": 970.0, "samples": 1000.0}
BAD_OWN_LABELS = {"value": 0.80, "correct": 800.0, "samples": 1000.0}
EQUAL = paired(9_000, 500, 300, 290)
WORSE = paired(9_000, 500, 400, 150)
CLOSE = paired(9_000, 500, 350, 250)


@pytest.mark.parametrize(
    ("own", "counts", "expected"),
    [
        (GOOD_OWN_LABELS, EQUAL, Verdict.PASS),  # both rules pass
        (GOOD_OWN_LABELS, WORSE, Verdict.FAIL),  # above the threshold, but worse than the stable
        (BAD_OWN_LABELS, EQUAL, Verdict.FAIL),  # as good as the stable, but below the threshold
        (GOOD_OWN_LABELS, CLOSE, Verdict.INCONCLUSIVE),  # one rule cannot tell yet
        (GOOD_OWN_LABELS, None, Verdict.ERROR),  # the paired counts are missing
        (BAD_OWN_LABELS, None, Verdict.FAIL),  # the threshold alone is evidence enough
        ({"value": 0.9, "correct": 36.0, "samples": 40.0}, EQUAL, Verdict.INCONCLUSIVE),  # min_samples
    ],
)
def test_a_shadow_check_needs_both_rules_to_pass_and_fails_on_either(
    own: dict[str, float], counts: PairedCounts | None, expected: Verdict
) -> None:
    outcome = judge_shadow(Measurement(**own, paired=counts), ACCURACY, COMPARISON)
    assert outcome.verdict is expected
    assert outcome.value == own["value"]  # the candidate's own accuracy, as status shows it
    assert outcome.comparison is not None
    assert outcome.comparison.verdict is judge_paired(counts, COMPARISON).verdict
    assert outcome.reason.endswith(outcome.comparison.reason)


def test_a_shadow_check_that_could_not_measure_is_one_error() -> None:
    outcome = judge_shadow(Measurement(error="connection refused", paired=EQUAL), ACCURACY, COMPARISON)
    assert outcome.verdict is Verdict.ERROR
    assert outcome.comparison is None
    assert outcome.reason == "metrics unavailable: connection refused"


def test_a_shadow_check_with_a_custom_query_compares_its_value_and_the_pairs() -> None:
    outcome = judge_shadow(Measurement(value=0.95, paired=WORSE), CUSTOM, COMPARISON)
    assert outcome.verdict is Verdict.FAIL
    assert outcome.value == 0.95
