"""Simulated analyses: Vigil's rollback rules against the naive per-window rule.

Three tables: the analysis before promotion (below), weeks of watching a promoted version
(`steady_state.py`: false rollbacks within 1, 7 and 30 days, and the delay to catch a drop), and
a shadow candidate compared with the stable release on the same labelled ids (`paired.py`: the
paired test against an unpaired one, and the labels each needs).

Each simulated rollout runs `CHECKS` checks; before each, `K` labelled predictions arrive, each
right with probability `true accuracy`. Both rules see the same predictions:

- ours: the counts since the version started serving, judged by `vigil_operator.analysis.judge`
  (built-in metric, Wilson bounds) and counted by `next_streaks`; rollback at `FAILURE_LIMIT`
  consecutive fails. Promotion (`SUCCESS_LIMIT` passes in a row) is reported but does not stop
  the simulated analysis, so both rules get the same 20 checks to find a bad model;
- naive (Flagger, Argo Rollouts): each check judges its own K predictions alone and fails when
  their accuracy is below the threshold; rollback at `FAILURE_LIMIT` consecutive fails.

Run: `.venv/bin/python bench/decisions.py [--runs N] [--steady-runs M] [--paired-runs P] [--seed S]`
(or `make bench-decisions`). Prints the tables and the goals of issues 4, 9 and 14; exits 1 when a
goal is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import paired
import steady_state

from vigil_operator.analysis import Criteria, Measurement, Streaks, Verdict, judge, next_streaks

THRESHOLD = 0.90
CHECKS = 20
FAILURE_LIMIT = 3
SUCCESS_LIMIT = 3
MIN_SAMPLES = 100
CONFIDENCE = 0.95
TRUE_ACCURACIES = (0.80, 0.85, 0.88, 0.89, 0.90, 0.91, 0.93, 0.95, 0.97)
PREDICTIONS_PER_CHECK = (50, 100, 400)
DEFAULT_RUNS = 10_000


@dataclass(frozen=True)
class RuleStats:
    """How one rule did over the simulated rollouts of one cell."""

    rolled_back: float  # fraction of rollouts rolled back within CHECKS checks
    median_checks_to_rollback: float | None  # among those rolled back
    promoted: float | None = None  # ours only: fraction promoted within CHECKS checks
    median_checks_to_promotion: float | None = None


@dataclass(frozen=True)
class Cell:
    """One true accuracy at one traffic level."""

    true_accuracy: float
    per_check: int
    runs: int
    ours: RuleStats
    naive: RuleStats

    @property
    def healthy(self) -> bool:
        return self.true_accuracy >= THRESHOLD

    def wrong_decisions(self, stats: RuleStats) -> float:
        """False rollbacks of a healthy model, or missed rollbacks of a bad one."""
        return stats.rolled_back if self.healthy else 1.0 - stats.rolled_back


@dataclass(frozen=True)
class Goal:
    description: str
    met: bool
    detail: str


@cache
def our_verdict(correct: int, samples: int, confidence: float) -> Verdict:
    """The real `judge`, memoised: it is pure and the same counts recur across rollouts."""
    criteria = Criteria(threshold=THRESHOLD, min_samples=MIN_SAMPLES, confidence=confidence, builtin=True)
    measurement = Measurement(value=correct / samples, correct=float(correct), samples=float(samples))
    return judge(measurement, criteria).verdict


def simulate_ours(correct_per_check: np.ndarray, per_check: int, confidence: float) -> RuleStats:
    """Cumulative evidence, `judge` and `next_streaks`: what the operator does before promotion."""
    cumulative_correct = np.cumsum(correct_per_check, axis=1).tolist()
    rollback_checks: list[int] = []
    promotion_checks: list[int] = []
    for rollout in cumulative_correct:
        streaks = Streaks()
        promoted = False
        for check, correct in enumerate(rollout, start=1):
            streaks = next_streaks(streaks, our_verdict(correct, check * per_check, confidence))
            if not promoted and streaks.passes >= SUCCESS_LIMIT:
                promoted = True
                promotion_checks.append(check)
            if streaks.failures >= FAILURE_LIMIT:
                rollback_checks.append(check)
                break
    runs = len(cumulative_correct)
    return RuleStats(
        rolled_back=len(rollback_checks) / runs,
        median_checks_to_rollback=_median(rollback_checks),
        promoted=len(promotion_checks) / runs,
        median_checks_to_promotion=_median(promotion_checks),
    )


def simulate_naive(correct_per_check: np.ndarray, per_check: int) -> RuleStats:
    """Each check alone: fail when its own window's accuracy is below the threshold."""
    failed = correct_per_check / per_check < THRESHOLD
    runs = failed.shape[0]
    fails_in_a_row = np.zeros(runs, dtype=np.int64)
    rollback_check = np.zeros(runs, dtype=np.int64)  # 0: never rolled back
    for check in range(CHECKS):
        fails_in_a_row = np.where(failed[:, check], fails_in_a_row + 1, 0)
        newly = (rollback_check == 0) & (fails_in_a_row >= FAILURE_LIMIT)
        rollback_check[newly] = check + 1
    rolled_back = rollback_check[rollback_check > 0].tolist()
    return RuleStats(rolled_back=len(rolled_back) / runs, median_checks_to_rollback=_median(rolled_back))


def simulate_cell(
    true_accuracy: float, per_check: int, runs: int, seed: int, confidence: float = CONFIDENCE
) -> Cell:
    # Each cell has its own stream, so a cell's numbers do not depend on which other cells ran.
    rng = np.random.default_rng([seed, round(true_accuracy * 10_000), per_check])
    correct_per_check = rng.binomial(per_check, true_accuracy, size=(runs, CHECKS))
    return Cell(
        true_accuracy=true_accuracy,
        per_check=per_check,
        runs=runs,
        ours=simulate_ours(correct_per_check, per_check, confidence),
        naive=simulate_naive(correct_per_check, per_check),
    )


def simulate(
    runs: int,
    seed: int,
    true_accuracies: Sequence[float] = TRUE_ACCURACIES,
    predictions_per_check: Sequence[int] = PREDICTIONS_PER_CHECK,
    confidence: float = CONFIDENCE,
) -> list[Cell]:
    """Every (traffic, true accuracy) cell, traffic-major."""
    return [
        simulate_cell(accuracy, per_check, runs, seed, confidence)
        for per_check in predictions_per_check
        for accuracy in true_accuracies
    ]


def goals(cells: Sequence[Cell]) -> list[Goal]:
    """Issue 4's goals, at 100 labelled predictions per check."""
    by_key = {(cell.per_check, cell.true_accuracy): cell for cell in cells}
    healthy, bad = by_key[(100, 0.91)], by_key[(100, 0.85)]
    ours_median = bad.ours.median_checks_to_rollback
    naive_median = bad.naive.median_checks_to_rollback
    return [
        Goal(
            "false rollbacks at 0.91 <= 1%",
            healthy.ours.rolled_back <= 0.01,
            f"ours {_percent(healthy.ours.rolled_back)}, naive {_percent(healthy.naive.rolled_back)}",
        ),
        Goal(
            "rollbacks at 0.85 >= 99%",
            bad.ours.rolled_back >= 0.99,
            f"ours {_percent(bad.ours.rolled_back)}, naive {_percent(bad.naive.rolled_back)}",
        ),
        Goal(
            "median checks to rollback at 0.85 <= naive + 1",
            ours_median is not None and naive_median is not None and ours_median <= naive_median + 1,
            f"ours {_checks(ours_median)}, naive {_checks(naive_median)}",
        ),
    ]


def steady_goals(
    steady: Sequence[steady_state.SteadyCell], delays: Sequence[steady_state.DelayCell]
) -> list[Goal]:
    """Issue 9's goals, at 100 labelled predictions per 5 minutes."""
    healthy = next(c for c in steady if (c.per_window, c.true_accuracy) == (100, 0.91))
    by_drop = {c.after_drop: c for c in delays if c.per_window == 100}
    month = steady_state.HORIZONS_DAYS.index(30)
    goals = [
        Goal(
            "models at 0.91 reverted within 30 days <= 1%",
            healthy.reverted_within["ours"][month] <= 0.01,
            f"ours {_percent(healthy.reverted_within['ours'][month])}, "
            f"today's {_percent(healthy.reverted_within['today'][month])}, "
            f"naive {_percent(healthy.reverted_within['naive'][month])}",
        )
    ]
    for after_drop, limit in ((0.85, 40.0), (0.80, 15.0)):
        cell = by_drop[after_drop]
        median = cell.median_minutes["ours"]
        goals.append(
            Goal(
                f"a drop to {after_drop:.2f} reverted within {limit:g} min (median)",
                median is not None and median <= limit and cell.missed["ours"] == 0,
                f"ours {_checks(median)} min, p95 {_checks(cell.p95_minutes['ours'])} min",
            )
        )
    return goals


def render_table(cells: Sequence[Cell]) -> str:
    """A Markdown table, one row per cell."""
    header = (
        "| K | true acc | wrong decision | ours | naive | naive/ours "
        "| checks to rollback, ours | naive | promoted, ours | checks to promotion, ours |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for cell in cells:
        ours, naive = cell.wrong_decisions(cell.ours), cell.wrong_decisions(cell.naive)
        lines.append(
            "| "
            + " | ".join(
                [
                    str(cell.per_check),
                    f"{cell.true_accuracy:.2f}",
                    "false rollback" if cell.healthy else "missed rollback",
                    _percent(ours),
                    _percent(naive),
                    _ratio(naive, ours, cell.runs),
                    _checks(cell.ours.median_checks_to_rollback),
                    _checks(cell.naive.median_checks_to_rollback),
                    _percent(cell.ours.promoted),
                    _checks(cell.ours.median_checks_to_promotion),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="simulated rollouts per cell")
    parser.add_argument(
        "--steady-runs",
        type=int,
        default=steady_state.DEFAULT_RUNS,
        help="simulated promoted models per cell of the steady-state table (0 skips it)",
    )
    parser.add_argument(
        "--paired-runs",
        type=int,
        default=paired.DEFAULT_RUNS,
        help="simulated shadow candidates per row of the paired table (0 skips it)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument(
        "--confidence",
        type=float,
        default=CONFIDENCE,
        help="spec.analysis.confidence for our rule (0.90 is the one-sided reading of 95%%)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if args.steady_runs < 0 or args.paired_runs < 0:
        parser.error("--steady-runs and --paired-runs must be >= 0")

    if not 0.0 < args.confidence < 1.0:
        parser.error("--confidence must be in (0, 1)")

    cells = simulate(args.runs, args.seed, confidence=args.confidence)
    print(
        f"{args.runs} simulated rollouts per cell, seed {args.seed}; K labelled predictions per check, "
        f"{CHECKS} checks, failureLimit {FAILURE_LIMIT}, successLimit {SUCCESS_LIMIT}, "
        f"threshold {THRESHOLD:.2f}, minSamples {MIN_SAMPLES}, confidence {args.confidence:g}"
    )
    print("ours: judge() on all labelled predictions since the version started serving;")
    print("naive: each check's own K predictions, failed when below the threshold (Flagger, Argo Rollouts)")
    print()
    print(render_table(cells))
    print()
    results = goals(cells)
    print(
        "Goals (K=100): "
        + "; ".join(f"{g.description}: {'PASS' if g.met else 'FAIL'} ({g.detail})" for g in results)
    )
    if args.steady_runs:
        results += steady(args.steady_runs, args.seed)
    if args.paired_runs:
        results += shadow(args.paired_runs, args.seed)
    return 0 if all(g.met for g in results) else 1


def steady(runs: int, seed: int) -> list[Goal]:
    """Print the steady-state tables; return issue 9's goals."""
    print()
    print(
        f"After promotion: {runs} simulated models per cell, seed {seed}; a check every "
        f"{steady_state.INTERVAL_SECONDS:g} s for {steady_state.DAYS} days, Poisson labels, threshold "
        f"{steady_state.THRESHOLD:.2f}; share of models reverted within 1, 7 and 30 days"
    )
    print("ours: the CUSUM watch (drop 0.05, limit 10 at 100 labels per 5 m, raised with the label rate);")
    print("today: the rule before issue 9, the Wilson gate on the last 5 m and 3 fails in a row;")
    print("naive: the last 5 m below the threshold, 3 fails in a row (Flagger, Argo Rollouts)")
    print()
    steady_cells = [
        steady_state.simulate_steady(accuracy, per_window, runs, seed)
        for per_window in steady_state.LABELS_PER_WINDOW
        for accuracy in steady_state.TRUE_ACCURACIES
    ]
    print(steady_state.render_steady(steady_cells))
    print()
    print(
        f"Detection delay: {steady_state.WARM_UP_CHECKS} checks at {steady_state.HEALTHY_BEFORE_DROP}, "
        "then the drop; minutes from the drop to the revert (models reverted before it left out)"
    )
    print()
    delays = [
        steady_state.simulate_delay(after_drop, per_window, max(runs, 2_000), seed)
        for per_window in steady_state.LABELS_PER_WINDOW
        for after_drop in steady_state.DROPS
    ]
    print(steady_state.render_delays(delays))
    print()
    results = steady_goals(steady_cells, delays)
    print(
        "Goals after promotion (100 labels per 5 m): "
        + "; ".join(f"{g.description}: {'PASS' if g.met else 'FAIL'} ({g.detail})" for g in results)
    )
    return results


def shadow(runs: int, seed: int) -> list[Goal]:
    """Print the paired-vs-unpaired table; return issue 14's goals."""
    horizon = paired.MAX_CHECKS * paired.LABELS_PER_CHECK
    print()
    print(
        f"Shadow: {runs} simulated candidates per row, seed {seed}; stable accuracy "
        f"{paired.STABLE_ACCURACY:.2f}, margin {paired.MARGIN:g}, confidence {paired.CONFIDENCE:g}, "
        f"{paired.LABELS_PER_CHECK} new labelled ids per check, up to {paired.MAX_CHECKS} checks "
        f"({horizon:,} ids); {paired.SUCCESS_LIMIT} passes in a row accept, {paired.FAILURE_LIMIT} fails "
        "in a row reject"
    )
    print("paired: McNemar's exact test on the disagreements (spec.strategy.shadow);")
    print("unpaired: Newcombe's two-proportion interval on the same ids, ignoring the pairing;")
    print(
        f"error correlation: of the two models' right/wrong indicators (assumed {paired.ASSUMED_CORRELATION})"
    )
    print()
    rows = paired.simulate(runs, seed)
    print(paired.render(rows))
    print()
    results = paired_goals(rows)
    print(
        f"Goals of the shadow comparison (error correlation {paired.ASSUMED_CORRELATION}): "
        + "; ".join(f"{g.description}: {'PASS' if g.met else 'FAIL'} ({g.detail})" for g in results)
    )
    return results


def paired_goals(rows: Sequence[paired.PairedRow]) -> list[Goal]:
    """Issue 14's goals at the assumed correlation of the two models' errors."""
    by_key = {(row.correlation, row.difference): row for row in rows}
    equal = by_key[(paired.ASSUMED_CORRELATION, 0.0)]
    worse = by_key[(paired.ASSUMED_CORRELATION, -0.02)]
    horizon = paired.MAX_CHECKS * paired.LABELS_PER_CHECK
    worse_paired = worse.results["paired"]
    return [
        Goal(
            "false rejections at equal accuracy <= 1%",
            equal.results["paired"].rejected <= 0.01,
            f"paired {_percent(equal.results['paired'].rejected)}, "
            f"unpaired {_percent(equal.results['unpaired'].rejected)}",
        ),
        Goal(
            f"a candidate 0.02 worse rejected within {horizon:,} labelled ids >= 99%",
            worse_paired.rejected >= 0.99,
            f"paired {_percent(worse_paired.rejected)}, 99% of them by {worse_paired.p99_labels:,.0f} ids",
        ),
        Goal(
            "the paired test needs fewer labels than the unpaired one (median)",
            min(equal.labels_ratio, worse.labels_ratio) > 1.0,
            f"unpaired/paired {equal.labels_ratio:.2f}x at equal accuracy, "
            f"{worse.labels_ratio:.2f}x at 0.02 worse",
        ),
    ]


def _median(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.2f}%"


def _checks(median: float | None) -> str:
    return "-" if median is None else f"{median:g}"


def _ratio(naive: float, ours: float, runs: int) -> str:
    if ours == 0:
        # Ours saw none in `runs` rollouts: its rate is below 1/runs, so the ratio is a lower bound.
        return "-" if naive == 0 else f"> {naive * runs:.0f}x"
    ratio = naive / ours
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


if __name__ == "__main__":
    sys.exit(main())
