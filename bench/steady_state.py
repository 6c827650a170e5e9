"""Simulated weeks of watching a promoted version: false rollbacks per day and month, detection delay.

A promoted model is checked every `INTERVAL_SECONDS` (30 s) for `DAYS` days; labelled predictions
arrive as a Poisson stream of `per_window` per 5 minutes, each right with probability *true
accuracy*. Three rules see the same labels:

- ours: the CUSUM watch of `vigil_operator.analysis.watch` (disjoint 30 s increments, evidence of a
  drop to threshold - drop, reverted when it reaches the rate-adjusted limit). Vectorised here for
  speed; `tests/unit/test_bench_decisions.py` checks it against the real `watch()` step by step;
- today's (the rule before issue 9): every check judges the last 5 minutes with the Wilson gate
  (`judge`), inconclusive checks keep the fail streak, 3 fails in a row revert;
- naive (Flagger, Argo Rollouts): every check fails when the last 5 minutes' accuracy is below the
  threshold, 3 fails in a row revert.

Detection delay: the model runs at 0.95 for `WARM_UP_CHECKS`, then drops; the delay is the time
from the drop to the revert, over the runs not reverted before it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from vigil_operator.analysis import WatchParams, log_likelihood_ratios

THRESHOLD = 0.90
INTERVAL_SECONDS = 30.0
WINDOW_CHECKS = 10  # the default 5 m window over 30 s checks
FAILURE_LIMIT = 3
MIN_SAMPLES = 100
CONFIDENCE = 0.95
DAYS = 30
HORIZONS_DAYS = (1, 7, 30)
TRUE_ACCURACIES = (0.88, 0.89, 0.90, 0.91, 0.92, 0.95)
LABELS_PER_WINDOW = (50, 100, 400)
DROPS = (0.85, 0.80)
HEALTHY_BEFORE_DROP = 0.95
WARM_UP_CHECKS = 240  # two hours at 0.95 before the drop
MAX_DELAY_CHECKS = 2880  # a day: a rule that has not reverted by then is reported as missed
RULES = ("ours", "today", "naive")
DEFAULT_RUNS = 1_000


@dataclass(frozen=True)
class SteadyCell:
    """One true accuracy at one label rate: the fraction of models reverted within each horizon."""

    true_accuracy: float
    per_window: int
    runs: int
    reverted_within: dict[str, tuple[float, ...]]  # rule -> fraction per HORIZONS_DAYS


@dataclass(frozen=True)
class DelayCell:
    """Minutes from a drop to the revert."""

    after_drop: float
    per_window: int
    runs: int
    median_minutes: dict[str, float | None]
    p95_minutes: dict[str, float | None]
    missed: dict[str, float]  # fraction not reverted within MAX_DELAY_CHECKS


BLOCK_CHECKS = 2_880  # a day of checks, simulated at once


class Rules:
    """The three rules' state for `runs` simulated models, advanced a block of checks at a time.

    Each rule is a recursion over checks (a CUSUM, streaks); over a block they are computed in
    closed form with cumulative sums and running extremes, so a month of checks takes seconds.
    """

    def __init__(self, runs: int, params: WatchParams) -> None:
        self.params = params
        self.on_right, self.on_wrong = log_likelihood_ratios(params)
        self.statistic = np.zeros(runs)
        self.samples_seen = np.zeros(runs)
        self.checks_seen = 0
        self.recent_right = np.zeros((WINDOW_CHECKS - 1, runs))  # the window's tail before this block
        self.recent_wrong = np.zeros((WINDOW_CHECKS - 1, runs))
        self.today_fails = np.zeros(runs)
        self.naive_fails = np.zeros(runs)
        self.z = NormalDist().inv_cdf((1 + CONFIDENCE) / 2)

    def block(
        self, right: np.ndarray, wrong: np.ndarray, rules: Sequence[str] = RULES
    ) -> dict[str, np.ndarray]:
        """Checks with these new labels (shape checks x runs); per rule asked for, the first check
        (1-based, within the block) at which it reverts each model, 0 if it does not. A rule left
        out (it has reverted every model already) is not computed."""
        checks = right.shape[0]
        # ours: S_t = max(0, S_{t-1} + x_t) is X_t - min(-S_0, min_{k<=t} X_k) for X = cumsum(x).
        evidence = np.cumsum(right * self.on_right + wrong * self.on_wrong, axis=0)
        statistic = evidence - np.minimum(-self.statistic, np.minimum.accumulate(evidence, axis=0))
        seen = self.samples_seen + np.cumsum(right + wrong, axis=0)
        elapsed = (self.checks_seen + np.arange(1, checks + 1))[:, None] * INTERVAL_SECONDS
        limit = self.params.limit + np.log(np.maximum(1.0, seen / elapsed / self.params.reference_rate))
        reverts = {"ours": _first(statistic >= limit)}
        self.statistic, self.samples_seen = statistic[-1], seen[-1]
        self.checks_seen += checks

        window_right = _rolling(np.vstack([self.recent_right, right]))
        window_total = window_right + _rolling(np.vstack([self.recent_wrong, wrong]))
        self.recent_right = np.vstack([self.recent_right, right])[-(WINDOW_CHECKS - 1) :]
        self.recent_wrong = np.vstack([self.recent_wrong, wrong])[-(WINDOW_CHECKS - 1) :]
        if "today" in rules:
            reverts["today"] = self._today(window_right, window_total)
        if "naive" in rules:
            reverts["naive"] = self._naive(window_right, window_total)
        return reverts

    def _today(self, window_right: np.ndarray, window_total: np.ndarray) -> np.ndarray:
        lower, upper = _wilson(window_right, window_total, self.z)
        judged = window_total >= MIN_SAMPLES
        streak, self.today_fails = _streak(
            judged & (upper < THRESHOLD), judged & (lower >= THRESHOLD), self.today_fails
        )
        return _first(streak >= FAILURE_LIMIT)

    def _naive(self, window_right: np.ndarray, window_total: np.ndarray) -> np.ndarray:
        below = window_right < THRESHOLD * window_total
        has_labels = window_total > 0
        streak, self.naive_fails = _streak(has_labels & below, has_labels & ~below, self.naive_fails)
        return _first(streak >= FAILURE_LIMIT)


def _rolling(values: np.ndarray) -> np.ndarray:
    """Sums over the last WINDOW_CHECKS rows, for each row after the first WINDOW_CHECKS - 1."""
    total = np.cumsum(values, axis=0)
    total = np.vstack([np.zeros((1, values.shape[1])), total])
    return total[WINDOW_CHECKS:] - total[:-WINDOW_CHECKS]


def _streak(fail: np.ndarray, passed: np.ndarray, before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fails in a row, where a pass resets and anything else keeps the count (`next_streaks`)."""
    fails = before + np.cumsum(fail, axis=0)
    at_last_pass = np.maximum.accumulate(np.where(passed, fails, 0.0), axis=0)
    streak = fails - at_last_pass
    return streak, streak[-1]


def _first(hit: np.ndarray) -> np.ndarray:
    """The first row (1-based) where `hit` holds, per column; 0 where it never does."""
    return np.where(hit.any(axis=0), hit.argmax(axis=0) + 1, 0)


def _wilson(right: np.ndarray, total: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    safe = np.maximum(total, 1)
    p = right / safe
    z2n = z * z / safe
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * np.sqrt(p * (1 - p) / safe + z2n / (4 * safe)) / (1 + z2n)
    return centre - half, centre + half


def _labels(
    rng: np.random.Generator, accuracy: float, per_window: int, shape: tuple[int, int]
) -> tuple[np.ndarray, ...]:
    per_check = per_window / WINDOW_CHECKS
    return (
        rng.poisson(per_check * accuracy, shape).astype(float),
        rng.poisson(per_check * (1 - accuracy), shape).astype(float),
    )


def _run(
    rules: Rules, rng: np.random.Generator, accuracy: float, per_window: int, checks: int, runs: int
) -> dict[str, np.ndarray]:
    """Advance `rules` by `checks` checks at `accuracy`; per rule, the first check that reverts each
    model (1-based, counted from the start of this run), 0 if none."""
    reverted_at = {rule: np.zeros(runs, dtype=np.int64) for rule in RULES}
    done, active = 0, list(RULES)
    while done < checks and active:
        size = min(BLOCK_CHECKS, checks - done)
        for rule, first in rules.block(*_labels(rng, accuracy, per_window, (size, runs)), active).items():
            newly = (reverted_at[rule] == 0) & (first > 0)
            reverted_at[rule][newly] = done + first[newly]
        done += size
        active = [rule for rule in active if not (reverted_at[rule] > 0).all()]
    return reverted_at


def simulate_steady(
    true_accuracy: float,
    per_window: int,
    runs: int,
    seed: int,
    days: float = DAYS,
    params: WatchParams | None = None,
) -> SteadyCell:
    """`runs` promoted models at `true_accuracy` for `days`: when, if ever, each rule reverts them."""
    rng = np.random.default_rng([seed, round(true_accuracy * 10_000), per_window])
    rules = Rules(runs, params or WatchParams(threshold=THRESHOLD))
    checks_per_day = 86_400 / INTERVAL_SECONDS
    reverted_at = _run(rules, rng, true_accuracy, per_window, round(days * checks_per_day), runs)
    fractions = {
        rule: tuple(
            float(((at > 0) & (at <= horizon * checks_per_day)).mean()) if horizon <= days else math.nan
            for horizon in HORIZONS_DAYS
        )
        for rule, at in reverted_at.items()
    }
    return SteadyCell(true_accuracy, per_window, runs, fractions)


def simulate_delay(after_drop: float, per_window: int, runs: int, seed: int) -> DelayCell:
    """Minutes from a drop (0.95 -> `after_drop`) to the revert, per rule."""
    rng = np.random.default_rng([seed, round(after_drop * 10_000), per_window, 7])
    rules = Rules(runs, WatchParams(threshold=THRESHOLD))
    before = _run(rules, rng, HEALTHY_BEFORE_DROP, per_window, WARM_UP_CHECKS, runs)
    after = _run(rules, rng, after_drop, per_window, MAX_DELAY_CHECKS, runs)
    medians: dict[str, float | None] = {}
    p95s: dict[str, float | None] = {}
    missed: dict[str, float] = {}
    for rule in RULES:
        caught = after[rule][before[rule] == 0]  # models a rule reverted before the drop are out
        minutes = (caught[caught > 0] * INTERVAL_SECONDS / 60).tolist()
        medians[rule] = statistics.median(minutes) if minutes else None
        p95s[rule] = float(np.percentile(minutes, 95)) if minutes else None
        missed[rule] = float((caught == 0).mean()) if caught.size else 0.0
    return DelayCell(after_drop, per_window, runs, medians, p95s, missed)


def render_steady(cells: Sequence[SteadyCell]) -> str:
    header = (
        "| labels / 5 m | true acc | "
        + " | ".join(f"{rule} {days} d" for rule in RULES for days in HORIZONS_DAYS)
        + " |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for cell in cells:
        values = [_percent(v) for rule in RULES for v in cell.reverted_within[rule]]
        lines.append(f"| {cell.per_window} | {cell.true_accuracy:.2f} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def render_delays(cells: Sequence[DelayCell]) -> str:
    header = (
        "| labels / 5 m | 0.95 drops to | "
        + " | ".join(f"{rule} median / p95 (min)" for rule in RULES)
        + " |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for cell in cells:
        values = [
            f"{_minutes(cell.median_minutes[rule])} / {_minutes(cell.p95_minutes[rule])}"
            + (f" ({_percent(cell.missed[rule])} missed)" if cell.missed[rule] else "")
            for rule in RULES
        ]
        lines.append(f"| {cell.per_window} | {cell.after_drop:.2f} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def _percent(fraction: float) -> str:
    return "-" if math.isnan(fraction) else f"{fraction * 100:.2f}%"


def _minutes(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
