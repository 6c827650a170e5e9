"""Simulated shadow analyses: the paired comparison against an unpaired two-proportion test.

A shadow candidate predicts the same requests as the stable release, so every labelled id scores
both. Each simulated shadow runs up to `MAX_CHECKS` checks of `LABELS_PER_CHECK` new labelled
ids; each id falls in one of four cells (both right, both wrong, only stable right, only
candidate right) drawn from the two accuracies and the correlation of the two models' errors.
Both rules see the same ids, cumulated since the shadow started, and decide like the operator:
`SUCCESS_LIMIT` passes in a row accept the candidate, `FAILURE_LIMIT` fails in a row reject it,
inconclusive checks keep both streaks (`analysis.next_streaks`); the first decision ends the run.

- paired: `analysis.paired_difference_interval` (McNemar's exact test on the disagreements,
  docs/analysis.md), vectorised here; `tests/unit/test_bench_decisions.py` checks it against
  the real function;
- unpaired: the same margin rule on Newcombe's hybrid score interval (Wilson intervals of each
  accuracy, combined as if the two were measured on different requests): what a comparison of
  two separately labelled versions (a canary against the stable release) can do.

Only the paired rule is simulated, not the threshold gate that runs beside it (benchmarked by the
first table), so the stable release sits well above the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from vigil_operator.analysis import DISAGREEMENT_SHARE_OF_ERROR

STABLE_ACCURACY = 0.92
MARGIN = 0.01  # the default of spec.strategy.shadow.margin
CONFIDENCE = 0.95
MIN_SAMPLES = 100
FAILURE_LIMIT = 3
SUCCESS_LIMIT = 3
LABELS_PER_CHECK = 200
MAX_CHECKS = 250  # a horizon of 50,000 labelled ids
# The assumption: two versions of one model mostly fail on the same hard inputs. At 0.92 each, a
# correlation of 0.6 between "stable right" and "candidate right" means 63% of each one's errors
# are shared and the two disagree on 5.9% of requests. 0 (independent errors) is the worst case.
ASSUMED_CORRELATION = 0.6
CORRELATIONS = (0.0, 0.3, ASSUMED_CORRELATION, 0.8)
DIFFERENCES = (0.0, -0.02)  # candidate minus stable accuracy
DEFAULT_RUNS = 4_000
BLOCK_CHECKS = 10
RULES = ("paired", "unpaired")


@dataclass(frozen=True)
class RuleResult:
    """How one rule decided over the simulated shadows of one row."""

    rejected: float
    accepted: float
    undecided: float
    median_labels: float  # labels until the first decision; inf when most runs never decide
    p99_labels: float  # labels by which 99% of the runs had decided; inf when fewer did


@dataclass(frozen=True)
class PairedRow:
    correlation: float
    difference: float
    runs: int
    discordance: float  # share of requests on which the two versions disagree
    results: dict[str, RuleResult]

    @property
    def equal(self) -> bool:
        return self.difference == 0.0

    def wrong_decisions(self, rule: str) -> float:
        """Rejections of an equally good candidate, or a worse one not rejected."""
        result = self.results[rule]
        return result.rejected if self.equal else 1.0 - result.rejected

    @property
    def labels_ratio(self) -> float:
        """Unpaired median labels over paired median labels: how much the pairing saves."""
        paired, unpaired = self.results["paired"].median_labels, self.results["unpaired"].median_labels
        return unpaired / paired if math.isfinite(paired) else math.nan


def cell_probabilities(stable: float, candidate: float, correlation: float) -> np.ndarray:
    """P(both right), P(both wrong), P(only stable right), P(only candidate right).

    `correlation` is the phi coefficient of the two models' right/wrong indicators.
    """
    covariance = correlation * math.sqrt(stable * (1 - stable) * candidate * (1 - candidate))
    both_wrong = (1 - stable) * (1 - candidate) + covariance
    only_stable = (1 - candidate) - both_wrong
    only_candidate = (1 - stable) - both_wrong
    both_right = 1 - both_wrong - only_stable - only_candidate
    cells = np.array([both_right, both_wrong, only_stable, only_candidate])
    if (cells < 0).any():
        raise ValueError(f"no joint distribution for {stable}, {candidate} at correlation {correlation}")
    return cells


def paired_bounds(
    only_stable: np.ndarray, only_candidate: np.ndarray, samples: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """`analysis.paired_difference_interval`, vectorised with SciPy's beta quantiles."""
    error = (1 - confidence) / 2
    disagreement_error = error * DISAGREEMENT_SHARE_OF_ERROR
    won_error = error - disagreement_error
    disagree = only_stable + only_candidate
    fewest, most = _clopper_pearson(disagree, samples, disagreement_error)
    won_low, won_high = _clopper_pearson(only_candidate, disagree, won_error)
    lower = (2 * won_low - 1) * np.where(won_low < 0.5, most, fewest)
    upper = (2 * won_high - 1) * np.where(won_high > 0.5, most, fewest)
    return lower, upper


def unpaired_bounds(
    stable_right: np.ndarray, candidate_right: np.ndarray, samples: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval of candidate minus stable accuracy (independent samples)."""
    z = stats.norm.ppf((1 + confidence) / 2)
    stable, candidate = stable_right / samples, candidate_right / samples
    stable_low, stable_high = _wilson(stable, samples, z)
    candidate_low, candidate_high = _wilson(candidate, samples, z)
    difference = candidate - stable
    lower = difference - np.sqrt((candidate - candidate_low) ** 2 + (stable_high - stable) ** 2)
    upper = difference + np.sqrt((candidate_high - candidate) ** 2 + (stable - stable_low) ** 2)
    return lower, upper


def verdicts(lower: np.ndarray, upper: np.ndarray, samples: np.ndarray, margin: float) -> np.ndarray:
    """+1 pass, -1 fail, 0 inconclusive: the rule of `analysis.judge_paired`."""
    judged = samples >= MIN_SAMPLES
    passed = judged & (lower >= -margin)
    failed = judged & (upper < -margin)
    return np.where(passed, 1, np.where(failed, -1, 0))


@dataclass
class Decisions:
    """The streaks and first decisions of many runs, advanced block of checks by block."""

    passes: np.ndarray
    fails: np.ndarray
    decided_at: np.ndarray  # the check of the first decision; 0: none yet
    decision: np.ndarray  # +1 accepted, -1 rejected, 0 undecided

    @classmethod
    def start(cls, runs: int) -> Decisions:
        return cls(*(np.zeros(runs, dtype=np.int64) for _ in range(4)))

    def advance(self, verdict: np.ndarray, first_check: int, runs: np.ndarray) -> None:
        """Apply the verdicts (checks x `runs`) of checks `first_check`, `first_check` + 1, ..."""
        passes, fails = self.passes[runs], self.fails[runs]
        decided_at, decision = self.decided_at[runs], self.decision[runs]
        for offset, checked in enumerate(verdict):
            passes = np.where(checked == 1, passes + 1, np.where(checked == -1, 0, passes))
            fails = np.where(checked == -1, fails + 1, np.where(checked == 1, 0, fails))
            undecided = decided_at == 0
            accept = undecided & (passes >= SUCCESS_LIMIT)
            reject = undecided & (fails >= FAILURE_LIMIT)
            decided_at[accept | reject] = first_check + offset
            decision[accept] = 1
            decision[reject] = -1
        self.passes[runs], self.fails[runs] = passes, fails
        self.decided_at[runs], self.decision[runs] = decided_at, decision


def first_decisions(verdict: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per run (columns), the check of the first decision (0: none) and it (+1 accept, -1 reject)."""
    decisions = Decisions.start(verdict.shape[1])
    decisions.advance(verdict, 1, np.arange(verdict.shape[1]))
    return decisions.decided_at, decisions.decision


def simulate_row(
    correlation: float,
    difference: float,
    runs: int,
    seed: int,
    max_checks: int = MAX_CHECKS,
    margin: float = MARGIN,
) -> PairedRow:
    """One (correlation, difference) row: both rules on the same simulated labelled ids."""
    cells = cell_probabilities(STABLE_ACCURACY, STABLE_ACCURACY + difference, correlation)
    rng = np.random.default_rng([seed, round(correlation * 1000), round(-difference * 10_000)])
    per_check = rng.multinomial(LABELS_PER_CHECK, cells, size=(max_checks, runs))
    both_right, _, only_stable, only_candidate = np.moveaxis(np.cumsum(per_check, axis=0), -1, 0)
    stable_right, candidate_right = both_right + only_stable, both_right + only_candidate
    results = {}
    for rule in RULES:
        decisions = Decisions.start(runs)
        # Most runs decide early: bound only the undecided ones, a block of checks at a time.
        for start in range(0, max_checks, BLOCK_CHECKS):
            undecided = np.flatnonzero(decisions.decided_at == 0)
            if undecided.size == 0:
                break
            block = np.s_[start : start + BLOCK_CHECKS, undecided]
            checks = np.arange(start + 1, min(start + BLOCK_CHECKS, max_checks) + 1)
            samples = (checks * LABELS_PER_CHECK)[:, None] * np.ones((1, undecided.size))
            if rule == "paired":
                lower, upper = paired_bounds(only_stable[block], only_candidate[block], samples, CONFIDENCE)
            else:
                lower, upper = unpaired_bounds(
                    stable_right[block], candidate_right[block], samples, CONFIDENCE
                )
            decisions.advance(verdicts(lower, upper, samples, margin), start + 1, undecided)
        labels = np.where(decisions.decided_at > 0, decisions.decided_at * LABELS_PER_CHECK, np.inf)
        results[rule] = RuleResult(
            rejected=float(np.mean(decisions.decision == -1)),
            accepted=float(np.mean(decisions.decision == 1)),
            undecided=float(np.mean(decisions.decision == 0)),
            median_labels=float(np.quantile(labels, 0.5, method="higher")),
            p99_labels=float(np.quantile(labels, 0.99, method="higher")),
        )
    return PairedRow(correlation, difference, runs, float(cells[2] + cells[3]), results)


def simulate(
    runs: int,
    seed: int,
    correlations: Sequence[float] = CORRELATIONS,
    differences: Sequence[float] = DIFFERENCES,
    max_checks: int = MAX_CHECKS,
) -> list[PairedRow]:
    return [
        simulate_row(correlation, difference, runs, seed, max_checks)
        for correlation in correlations
        for difference in differences
    ]


def render(rows: Sequence[PairedRow]) -> str:
    """A Markdown table, one row per (correlation, difference)."""
    header = (
        "| error correlation | disagree on | candidate - stable | wrong decision "
        "| paired | unpaired | labels to decide (median), paired | unpaired | unpaired/paired "
        "| labels for 99% decided, paired | unpaired |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        paired, unpaired = row.results["paired"], row.results["unpaired"]
        cells = [
            f"{row.correlation:g}",
            f"{row.discordance * 100:.1f}%",
            f"{row.difference:+.2f}",
            "false rejection" if row.equal else "not rejected",
            _percent(row.wrong_decisions("paired")),
            _percent(row.wrong_decisions("unpaired")),
            _labels(paired.median_labels),
            _labels(unpaired.median_labels),
            f"{row.labels_ratio:.2f}x" if math.isfinite(row.labels_ratio) else "-",
            _labels(paired.p99_labels),
            _labels(unpaired.p99_labels),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _clopper_pearson(
    successes: np.ndarray, trials: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """`exact.clopper_pearson` on arrays; (0, 1) where there are no trials."""
    some = np.maximum(successes, 1)
    room = np.maximum(trials - successes, 1)
    lower = np.where(successes > 0, stats.beta.ppf(alpha, some, trials - successes + 1), 0.0)
    upper = np.where(successes < trials, stats.beta.ppf(1 - alpha, successes + 1, room), 1.0)
    return lower, upper


def _wilson(proportion: np.ndarray, samples: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    z2_over_n = z * z / samples
    centre = (proportion + z2_over_n / 2) / (1 + z2_over_n)
    half = z * np.sqrt(proportion * (1 - proportion) / samples + z2_over_n / (4 * samples)) / (1 + z2_over_n)
    return centre - half, centre + half


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.2f}%"


def _labels(count: float) -> str:
    return f"> {MAX_CHECKS * LABELS_PER_CHECK:,}" if not math.isfinite(count) else f"{count:,.0f}"
