"""The statistics of one analysis check: a verdict from a measurement, and the streaks it feeds.

Pure and standard-library only, so the rollback rule can be tested and benchmarked on its own
(`tests/unit/test_analysis.py`, `bench/decisions.py`, and `docs/analysis.md` for the reasoning).

The rule for the built-in accuracy metric, for `correct` right answers out of `samples` labelled
predictions (counted since the version started serving, or over the last window after promotion):

- fewer than `min_samples` labelled predictions: INCONCLUSIVE;
- FAIL when the whole Wilson interval lies below the threshold (its upper bound is below it): the
  model is worse than the threshold beyond reasonable doubt, so noise alone rarely fails a healthy
  model;
- PASS when the whole interval lies at or above the threshold (its lower bound is at or above it):
  a clearly good model (0.97 against 0.90) gets there at the first check with 100 labelled
  predictions, while a model too close to the threshold to tell (0.905) stays INCONCLUSIVE
  instead of being promoted on a coin flip; promotion stays as careful as rollback;
- otherwise (the interval straddles the threshold): INCONCLUSIVE.

`confidence` is the two-sided level of the interval, as statistics libraries report it, so each
bound is one-sided at (1 + confidence) / 2 (97.5% for 0.95). The analysis looks at the same growing
evidence every interval, and every look is another chance for noise to cross a bound; the extra
half of the error budget pays for those repeated looks. With the one-sided reading (each bound at
95%) `bench/decisions.py` rolls back about 1.4% of models whose true accuracy is 0.91 (goal: 1%);
with this one, 0.5%, and bad models are caught no later. See docs/analysis.md.

A shadow candidate (one that predicted the same requests as the stable release) is judged by the
same gate on its own labels and, besides, by the paired comparison (`judge_paired`): on the ids
labelled for both, it must not be worse than the stable release by more than a margin. Only the
pairs where the two disagree carry evidence (McNemar's exact test); `judge_shadow` combines both.
"""

from __future__ import annotations

import enum
import math
from dataclasses import astuple, dataclass
from functools import cache
from statistics import NormalDist

from vigil_operator.exact import clopper_pearson


class Verdict(enum.StrEnum):
    """The outcome of one check."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


@dataclass(frozen=True)
class Measurement:
    """What one Prometheus check returned."""

    value: float | None = None  # accuracy (built-in; the counts win when given) or the custom query's number
    correct: float | None = None  # built-in only: labelled predictions that were right
    samples: float | None = None  # built-in only: labelled predictions scored
    error: str | None = None  # unreachable, bad query, NaN, no series ...
    paired: PairedCounts | None = None  # shadow only: the ids labelled for both candidate and stable


@dataclass(frozen=True)
class PairedCounts:
    """Labelled ids that both the stable release and the candidate predicted, by who was right."""

    both_right: float = 0.0
    both_wrong: float = 0.0
    only_stable_right: float = 0.0
    only_candidate_right: float = 0.0

    @property
    def samples(self) -> float:
        return self.both_right + self.both_wrong + self.only_stable_right + self.only_candidate_right

    @property
    def discordant(self) -> float:
        """The pairs where the two disagree: the only ones that tell the versions apart."""
        return self.only_stable_right + self.only_candidate_right

    @property
    def difference(self) -> float | None:
        """Candidate accuracy minus stable accuracy on these ids; None without any."""
        if self.samples == 0:
            return None
        return (self.only_candidate_right - self.only_stable_right) / self.samples


@dataclass(frozen=True)
class Criteria:
    """How a measurement is judged: `spec.analysis` of the ModelDeployment."""

    threshold: float
    min_samples: int
    confidence: float
    builtin: bool

    def __post_init__(self) -> None:
        # The CRD validates these; a violation here is a programming error, not a bad measurement.
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number, got {self.threshold}")
        if self.builtin and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1] for the accuracy metric, got {self.threshold}")
        if self.min_samples < 0:
            raise ValueError(f"min_samples must be >= 0, got {self.min_samples}")
        _check_confidence(self.confidence)


@dataclass(frozen=True)
class ComparisonCriteria:
    """How a shadow candidate is compared with the stable release on the same labelled ids."""

    margin: float  # `spec.strategy.shadow.margin`: how far below the stable's accuracy is acceptable
    min_samples: int
    confidence: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.margin) and 0.0 <= self.margin < 1.0):
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")
        if self.min_samples < 0:
            raise ValueError(f"min_samples must be >= 0, got {self.min_samples}")
        _check_confidence(self.confidence)


@dataclass(frozen=True)
class CheckOutcome:
    """The verdict of one check, with the numbers a person needs to trust it."""

    verdict: Verdict
    value: float | None
    samples: float | None
    lower: float | None
    upper: float | None
    reason: str  # one human sentence, shown in status, events and logs
    breach: bool = False  # this check alone is enough to act on (the watch's evidence crossed its limit)
    # Shadow only: the paired comparison with the stable release (value: the accuracy difference).
    comparison: CheckOutcome | None = None


@dataclass(frozen=True)
class Streaks:
    """Consecutive verdicts so far: what `failureLimit`, `successLimit` and `errorLimit` count."""

    failures: int = 0
    passes: int = 0
    errors: int = 0


@dataclass(frozen=True)
class WatchParams:
    """How a promoted version is watched: a Bernoulli CUSUM of `threshold` against `threshold - drop`.

    `limit` is the evidence (in nats) that reverts the version when labels arrive at
    `reference_rate` per second; at higher rates the limit grows by the log of the ratio, so the
    chance of a false rollback stays bounded per unit of time, not per label (docs/analysis.md).
    """

    threshold: float
    drop: float = 0.05
    limit: float = 10.0
    reference_rate: float = 100 / 300  # 100 labelled predictions per 5 minutes

    def __post_init__(self) -> None:
        if not 0.0 < self.drop < 1.0:
            raise ValueError(f"drop must be in (0, 1), got {self.drop}")
        if self.limit <= 0 or self.reference_rate <= 0:
            raise ValueError("limit and reference_rate must be positive")


@dataclass(frozen=True)
class WatchState:
    """What the watch of one promoted version remembers between checks (kept in status)."""

    statistic: float = 0.0  # CUSUM: log-likelihood evidence that accuracy dropped to threshold - drop
    samples: float = 0.0  # labelled predictions seen since the watch started
    seconds: float = 0.0  # time watched, for the label rate


def wilson_interval(correct: float, total: float, confidence: float) -> tuple[float, float]:
    """The two-sided Wilson score interval of `correct / total` at `confidence`; (0, 1) with no data."""
    _check_confidence(confidence)
    if not (math.isfinite(correct) and math.isfinite(total)) or total < 0 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total, finite; got correct={correct}, total={total}")
    if total == 0:
        return 0.0, 1.0
    z = _z_score(confidence)
    proportion = correct / total
    z2_over_n = z * z / total
    denominator = 1.0 + z2_over_n
    centre = (proportion + z2_over_n / 2.0) / denominator
    spread = math.sqrt(proportion * (1.0 - proportion) / total + z2_over_n / (4.0 * total))
    half_width = z * spread / denominator
    # Rounding can push a bound a hair past the point estimate or out of [0, 1] at p = 0 or 1.
    lower = max(0.0, min(centre - half_width, proportion))
    upper = min(1.0, max(centre + half_width, proportion))
    return lower, upper


def judge(measurement: Measurement, criteria: Criteria) -> CheckOutcome:
    """The verdict of one check; never raises for a bad measurement (that is an ERROR verdict)."""
    if measurement.error is not None:
        return _error(f"metrics unavailable: {measurement.error}")
    if criteria.builtin:
        return _judge_accuracy(measurement, criteria)
    return _judge_custom_query(measurement, criteria)


# Of each bound's error budget, the share spent on the unknown rate of disagreement; the rest goes
# to McNemar's test. The rate matters only to second order near equal accuracy, so a small share
# suffices (docs/analysis.md, "The paired comparison").
DISAGREEMENT_SHARE_OF_ERROR = 0.1


def paired_difference_interval(counts: PairedCounts, confidence: float) -> tuple[float, float]:
    """Bounds on candidate minus stable accuracy from paired counts, each one-sided at (1 + confidence) / 2.

    The difference is d * (2t - 1), with d the share of ids where the two disagree and t the
    share of those the candidate got right. Given the disagreements, the candidate's wins are
    binomial in t: McNemar's exact test, inverted into Clopper-Pearson bounds on t. d gets exact
    bounds of its own, and each bound on the difference takes the worst d, so it holds at its
    level whatever d is (Berger and Boos' way of bounding a nuisance parameter). (-1, 1) with no data.
    """
    _check_confidence(confidence)
    if not all(math.isfinite(count) and count >= 0 for count in astuple(counts)):
        raise ValueError(f"paired counts must be finite and >= 0, got {counts}")
    samples, disagreements = counts.samples, counts.discordant
    if samples == 0:
        return -1.0, 1.0
    error_per_bound = (1.0 - confidence) / 2.0
    disagreement_error = error_per_bound * DISAGREEMENT_SHARE_OF_ERROR
    fewest, most = clopper_pearson(disagreements, samples, disagreement_error)
    if disagreements == 0:
        won_low, won_high = 0.0, 1.0
    else:
        won_low, won_high = clopper_pearson(
            counts.only_candidate_right, disagreements, error_per_bound - disagreement_error
        )
    lower = (2.0 * won_low - 1.0) * (most if won_low < 0.5 else fewest)
    upper = (2.0 * won_high - 1.0) * (most if won_high > 0.5 else fewest)
    return lower, upper


def judge_paired(counts: PairedCounts | None, criteria: ComparisonCriteria) -> CheckOutcome:
    """The paired verdict: is the candidate at most `margin` worse than the stable release?

    Like the Wilson gate, with the difference in accuracy instead of the accuracy and minus the
    margin instead of the threshold: FAIL when the whole interval lies below -margin, PASS when it
    lies at or above, INCONCLUSIVE in between or before `min_samples` ids are labelled for both.
    """
    if counts is None:
        return _error("no paired counts: the ids labelled for both versions were not measured")
    try:
        lower, upper = paired_difference_interval(counts, criteria.confidence)
    except ValueError as error:
        return _error(f"unusable paired counts: {error}")
    samples, difference = counts.samples, counts.difference
    if samples == 0 or difference is None:
        reason = "no ids labelled for both the candidate and the stable release yet, so no verdict"
        return CheckOutcome(Verdict.INCONCLUSIVE, None, 0.0, None, None, reason)
    difference_seen = (
        f"candidate minus stable accuracy {difference:+.4f} "
        f"({criteria.confidence * 100:g}% interval {lower:+.4f} to {upper:+.4f})"
    )
    margin = f"-{criteria.margin:g}" if criteria.margin else "0"
    over = f"over {samples:.0f} ids labelled for both ({counts.discordant:.0f} where they disagree)"
    if samples < criteria.min_samples:
        verdict = Verdict.INCONCLUSIVE
        reason = (
            f"only {samples:.0f} ids labelled for both, {criteria.min_samples} needed before a verdict "
            f"(candidate minus stable accuracy so far {difference:+.4f})"
        )
    elif upper < -criteria.margin:
        verdict = Verdict.FAIL
        reason = f"{difference_seen} < margin {margin} {over}: worse than the stable release"
    elif lower >= -criteria.margin:
        verdict = Verdict.PASS
        reason = f"{difference_seen} >= margin {margin} {over}"
    else:
        verdict = Verdict.INCONCLUSIVE
        reason = f"{difference_seen} too close to margin {margin} to tell {over}"
    return CheckOutcome(verdict, difference, samples, lower, upper, reason)


def judge_shadow(
    measurement: Measurement, criteria: Criteria, comparison: ComparisonCriteria
) -> CheckOutcome:
    """A shadow candidate's check: the threshold on its own labels and the margin against the stable.

    Either rule failing fails the check (each is evidence enough, and rejecting a shadow costs no
    user anything); otherwise an error in either is an ERROR (never a rejection); it passes only
    when both pass. The outcome carries the candidate's accuracy, with the paired verdict inside.
    """
    absolute = judge(measurement, criteria)
    paired = judge_paired(measurement.paired, comparison) if measurement.error is None else absolute
    verdicts = {absolute.verdict, paired.verdict}
    if Verdict.FAIL in verdicts:
        verdict = Verdict.FAIL
    elif Verdict.ERROR in verdicts:
        verdict = Verdict.ERROR
    elif verdicts == {Verdict.PASS}:
        verdict = Verdict.PASS
    else:
        verdict = Verdict.INCONCLUSIVE
    reason = absolute.reason if paired is absolute else f"{absolute.reason}; paired: {paired.reason}"
    return CheckOutcome(
        verdict,
        absolute.value,
        absolute.samples,
        absolute.lower,
        absolute.upper,
        reason,
        comparison=None if paired is absolute else paired,
    )


def next_streaks(previous: Streaks, verdict: Verdict) -> Streaks:
    """The streaks after one more check.

    PASS and FAIL break each other's streak. INCONCLUSIVE carries no evidence either way, so it
    keeps both streaks as they are (a lull in labelled traffic must not restart the count towards
    a rollback of a bad model, nor add to it); it does show that metrics flow again, so it ends an
    error streak. ERROR counts towards `errorLimit` only: an outage neither helps nor hurts a version.
    """
    match verdict:
        case Verdict.FAIL:
            return Streaks(failures=previous.failures + 1)
        case Verdict.PASS:
            return Streaks(passes=previous.passes + 1)
        case Verdict.INCONCLUSIVE:
            return Streaks(failures=previous.failures, passes=previous.passes)
        case Verdict.ERROR:
            return Streaks(failures=previous.failures, passes=previous.passes, errors=previous.errors + 1)
    raise ValueError(f"unknown verdict {verdict!r}")


def watch_limit(params: WatchParams, state: WatchState) -> float:
    """The evidence that reverts a promoted version, given the label rate seen so far.

    More labels per hour mean more chances for noise to build evidence; raising the limit by the
    log of the rate ratio keeps the false-rollback chance per unit of time where it was at the
    reference rate (for a version at the threshold it is at most labels x exp(-limit)).
    """
    if state.seconds <= 0 or state.samples <= 0:
        return params.limit
    rate = state.samples / state.seconds
    return params.limit + math.log(max(1.0, rate / params.reference_rate))


def watch(
    measurement: Measurement, params: WatchParams, state: WatchState, elapsed_seconds: float
) -> tuple[CheckOutcome, WatchState]:
    """One check of a promoted version: the labels since the last check update the CUSUM.

    The statistic adds the log-likelihood ratio of "accuracy is threshold - drop" against
    "accuracy is threshold" for every new labelled prediction and never goes below zero, so a
    long healthy past does not hide a later drop. FAIL (a breach) when it reaches the limit.
    Errors leave the state as it was: an outage neither helps nor hurts a version.
    """
    if measurement.error is not None:
        return _error(f"metrics unavailable: {measurement.error}"), state
    counts = _counts(measurement)
    if isinstance(counts, CheckOutcome):
        return counts, state
    correct, samples = counts
    on_right, on_wrong = log_likelihood_ratios(params)
    statistic = max(0.0, state.statistic + correct * on_right + (samples - correct) * on_wrong)
    after = WatchState(
        statistic=statistic,
        samples=state.samples + samples,
        seconds=state.seconds + max(0.0, elapsed_seconds),
    )
    limit = watch_limit(params, after)
    threshold = _fmt_threshold(params.threshold)
    evidence = f"evidence of a drop below {threshold}: {statistic:.2f} of {limit:.2f}"
    if samples == 0:
        reason = f"no new labelled predictions since the last check; {evidence}"
        return CheckOutcome(Verdict.INCONCLUSIVE, None, 0.0, None, None, reason), after
    accuracy = correct / samples
    seen = f"accuracy {accuracy:.3f} over {samples:.0f} new labelled predictions"
    if statistic >= limit:
        reason = f"{seen}; {evidence}: accuracy has dropped"
        return CheckOutcome(Verdict.FAIL, accuracy, samples, None, None, reason, breach=True), after
    return CheckOutcome(Verdict.PASS, accuracy, samples, None, None, f"{seen}; {evidence}"), after


def log_likelihood_ratios(params: WatchParams) -> tuple[float, float]:
    """Evidence added by one right and by one wrong labelled prediction (nats)."""
    # Keep both hypotheses strictly inside (0, 1): a threshold of 1 or 0 must not divide by zero.
    tiny = 1e-6
    null = min(max(params.threshold, 2 * tiny), 1.0 - tiny)
    dropped = min(max(params.threshold - params.drop, tiny), null - tiny)
    return math.log(dropped / null), math.log((1.0 - dropped) / (1.0 - null))


def _counts(measurement: Measurement) -> tuple[float, float] | CheckOutcome:
    """(correct, samples) from a built-in measurement, or the ERROR outcome that says what is wrong."""
    samples, correct = measurement.samples, measurement.correct
    if samples is None or not math.isfinite(samples) or samples < 0:
        return _error(f"no usable count of labelled predictions (got {samples})")
    if correct is None:
        # Only the accuracy came back: recover the count of right answers from it.
        if measurement.value is None or not math.isfinite(measurement.value):
            return _error(f"no usable accuracy or count of correct predictions (got {measurement.value})")
        correct = measurement.value * samples
    inconsistent = f"inconsistent counters: {correct} correct out of {samples} labelled predictions"
    if not math.isfinite(correct) or correct < 0:
        return _error(inconsistent)
    if correct > samples:
        if not math.isclose(correct, samples):
            return _error(inconsistent)
        correct = samples  # floating-point noise from the query, not a real excess
    return correct, samples


def _judge_accuracy(measurement: Measurement, criteria: Criteria) -> CheckOutcome:
    counts = _counts(measurement)
    if isinstance(counts, CheckOutcome):
        return counts
    correct, samples = counts
    if samples == 0:
        return CheckOutcome(
            Verdict.INCONCLUSIVE, None, 0.0, None, None, "no labelled predictions yet, so no verdict"
        )
    accuracy = correct / samples
    lower, upper = wilson_interval(correct, samples, criteria.confidence)
    over = f"over {samples:.0f} labelled predictions"
    threshold = _fmt_threshold(criteria.threshold)
    interval = f"{criteria.confidence * 100:g}% interval {lower:.3f} to {upper:.3f}"
    if samples < criteria.min_samples:
        verdict = Verdict.INCONCLUSIVE
        reason = (
            f"only {samples:.0f} labelled predictions, {criteria.min_samples} needed before a verdict "
            f"(accuracy so far {accuracy:.3f})"
        )
    elif upper < criteria.threshold:
        verdict = Verdict.FAIL
        reason = f"accuracy {accuracy:.3f} ({interval}) < threshold {threshold} {over}"
    elif lower >= criteria.threshold:
        verdict = Verdict.PASS
        reason = f"accuracy {accuracy:.3f} ({interval}) >= threshold {threshold} {over}"
    else:
        verdict = Verdict.INCONCLUSIVE
        reason = f"accuracy {accuracy:.3f} ({interval}) too close to threshold {threshold} to tell {over}"
    return CheckOutcome(verdict, accuracy, samples, lower, upper, reason)


def _judge_custom_query(measurement: Measurement, criteria: Criteria) -> CheckOutcome:
    value = measurement.value
    if value is None:
        return _error("the query returned no value")
    if not math.isfinite(value):
        return _error(f"the query returned {value}")
    threshold = _fmt_threshold(criteria.threshold)
    if value >= criteria.threshold:
        verdict, comparison = Verdict.PASS, ">="
    else:
        verdict, comparison = Verdict.FAIL, "<"
    reason = f"value {value:g} {comparison} threshold {threshold}"
    return CheckOutcome(verdict, value, None, None, None, reason)


def _error(reason: str) -> CheckOutcome:
    return CheckOutcome(Verdict.ERROR, None, None, None, None, reason)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


@cache
def _z_score(confidence: float) -> float:
    return NormalDist().inv_cdf((1.0 + confidence) / 2.0)


def _fmt_threshold(threshold: float) -> str:
    """0.9 as "0.90" (how people write thresholds), 0.925 as "0.925"."""
    two_decimals = f"{threshold:.2f}"
    return two_decimals if float(two_decimals) == threshold else f"{threshold:g}"
