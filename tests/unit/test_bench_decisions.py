"""bench/decisions.py: the simulation's shape and the direction of its numbers (few runs, no timing)."""

from __future__ import annotations

import decisions
import numpy as np
import paired
import pytest
import steady_state

from vigil_operator.analysis import (
    ComparisonCriteria,
    Measurement,
    PairedCounts,
    WatchParams,
    WatchState,
    judge_paired,
    paired_difference_interval,
    watch,
)

RUNS = 300


@pytest.fixture(scope="module")
def cells() -> list[decisions.Cell]:
    return decisions.simulate(
        RUNS, seed=3, true_accuracies=(0.80, 0.88, 0.91, 0.97), predictions_per_check=(100,)
    )


def cell(cells: list[decisions.Cell], true_accuracy: float) -> decisions.Cell:
    return next(c for c in cells if c.true_accuracy == true_accuracy)


def test_one_cell_per_accuracy_and_traffic(cells: list[decisions.Cell]) -> None:
    assert [(c.per_check, c.true_accuracy) for c in cells] == [
        (100, 0.80),
        (100, 0.88),
        (100, 0.91),
        (100, 0.97),
    ]
    for c in cells:
        assert c.runs == RUNS
        for stats in (c.ours, c.naive):
            assert 0.0 <= stats.rolled_back <= 1.0
            if stats.median_checks_to_rollback is not None:
                assert decisions.FAILURE_LIMIT <= stats.median_checks_to_rollback <= decisions.CHECKS
        assert c.naive.promoted is None


def test_missed_rollbacks_grow_towards_the_threshold(cells: list[decisions.Cell]) -> None:
    far, near = cell(cells, 0.80), cell(cells, 0.88)
    assert far.wrong_decisions(far.ours) < near.wrong_decisions(near.ours)
    assert far.wrong_decisions(far.naive) < near.wrong_decisions(near.naive)


def test_a_bad_model_is_always_rolled_back_and_never_promoted(cells: list[decisions.Cell]) -> None:
    bad = cell(cells, 0.80)
    assert bad.ours.rolled_back == 1.0
    assert bad.ours.promoted == 0.0


def test_ours_rolls_back_fewer_healthy_models_than_naive(cells: list[decisions.Cell]) -> None:
    healthy = cell(cells, 0.91)
    assert healthy.healthy
    assert healthy.wrong_decisions(healthy.ours) < healthy.wrong_decisions(healthy.naive)


def test_a_clearly_good_model_is_promoted_at_the_success_limit(cells: list[decisions.Cell]) -> None:
    good = cell(cells, 0.97)
    assert good.ours.rolled_back == 0.0
    assert good.ours.promoted == 1.0
    assert good.ours.median_checks_to_promotion == decisions.SUCCESS_LIMIT


def test_cells_are_reproducible_and_independent_of_the_others(cells: list[decisions.Cell]) -> None:
    alone = decisions.simulate_cell(0.88, 100, RUNS, seed=3)
    assert alone == cell(cells, 0.88)


def test_main_prints_the_table_and_the_goals(capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = decisions.main(["--runs", "200", "--seed", "5", "--steady-runs", "0", "--paired-runs", "0"])
    output = capsys.readouterr().out
    table_rows = [line for line in output.splitlines() if line.startswith("| ")]
    expected_rows = 1 + len(decisions.TRUE_ACCURACIES) * len(decisions.PREDICTIONS_PER_CHECK)
    assert len(table_rows) == expected_rows
    goal_line = next(line for line in output.splitlines() if line.startswith("Goals"))
    assert goal_line.count("PASS") + goal_line.count("FAIL") == 3
    assert exit_code == (1 if "FAIL" in goal_line else 0)


# --- after promotion (steady_state.py) ------------------------------------------------------------


def test_the_vectorised_watch_is_the_real_watch_check_by_check() -> None:
    """The bench's closed-form CUSUM reverts exactly where `analysis.watch` would."""
    rng = np.random.default_rng(11)
    params = WatchParams(threshold=0.90)
    checks, runs = 400, 30
    accuracy = np.linspace(0.80, 0.95, runs)
    right = rng.poisson(10 * accuracy, (checks, runs)).astype(float)
    wrong = rng.poisson(10 * (1 - accuracy), (checks, runs)).astype(float)
    rules = steady_state.Rules(runs, params)
    first = rules.block(right[:150], wrong[:150], ["ours"])["ours"]
    later = rules.block(right[150:], wrong[150:], ["ours"])["ours"]
    expected = np.where(first > 0, first, np.where(later > 0, later + 150, 0))
    for run in range(runs):
        state, breached_at = WatchState(), 0
        for check in range(checks):
            r, w = right[check, run], wrong[check, run]
            outcome, state = watch(Measurement(correct=r, samples=r + w), params, state, 30.0)
            if outcome.breach and not breached_at:
                breached_at = check + 1
        assert breached_at == expected[run], f"run {run}"
    assert (expected > 0).any()
    assert (expected == 0).any()


def test_the_streak_rules_match_next_streaks() -> None:
    fail = np.array([[1], [1], [0], [1], [0], [1], [1]], dtype=bool)
    passed = np.array([[0], [0], [0], [0], [1], [0], [0]], dtype=bool)
    streak, last = steady_state._streak(fail, passed, np.array([1.0]))
    assert streak[:, 0].tolist() == [2, 3, 3, 4, 0, 1, 2]
    assert last.tolist() == [2]


@pytest.fixture(scope="module")
def steady() -> dict[float, steady_state.SteadyCell]:
    return {
        accuracy: steady_state.simulate_steady(accuracy, 100, runs=100, seed=3, days=2)
        for accuracy in (0.85, 0.91, 0.95)
    }


def test_a_clearly_bad_promoted_model_is_reverted_by_every_rule_within_a_day(
    steady: dict[float, steady_state.SteadyCell],
) -> None:
    for rule in steady_state.RULES:
        assert steady[0.85].reverted_within[rule][0] == 1.0


def test_only_our_watch_keeps_a_healthy_model(steady: dict[float, steady_state.SteadyCell]) -> None:
    healthy = steady[0.91].reverted_within
    assert healthy["ours"][0] <= 0.02
    assert healthy["today"][0] > 0.5
    assert healthy["naive"][0] > 0.9
    assert all(np.isnan(healthy[rule][-1]) for rule in steady_state.RULES)  # 30 days not simulated


def test_a_drop_is_caught_by_our_watch_with_its_delay() -> None:
    cell = steady_state.simulate_delay(0.80, 100, runs=200, seed=3)
    assert cell.missed["ours"] == 0.0
    assert cell.median_minutes["ours"] is not None
    assert 5 <= cell.median_minutes["ours"] <= 30
    assert cell.p95_minutes["ours"] >= cell.median_minutes["ours"]
    table = steady_state.render_delays([cell])
    assert "| 100 | 0.80 |" in table


# --- a shadow candidate against the stable release (paired.py) ------------------------------------


def test_the_vectorised_paired_bounds_are_the_real_ones() -> None:
    rng = np.random.default_rng(5)
    samples = rng.integers(1, 20_000, 300).astype(float)
    only_stable = np.floor(samples * rng.uniform(0, 0.1, 300))
    only_candidate = np.floor(samples * rng.uniform(0, 0.1, 300))
    only_candidate[:20] = 0  # no disagreement won by the candidate
    only_stable[10:30] = 0
    lower, upper = paired.paired_bounds(only_stable, only_candidate, samples, paired.CONFIDENCE)
    verdicts = paired.verdicts(lower, upper, samples, paired.MARGIN)
    criteria = ComparisonCriteria(paired.MARGIN, paired.MIN_SAMPLES, paired.CONFIDENCE)
    expected = {"pass": 1, "fail": -1, "inconclusive": 0}
    for run in range(300):
        both_right = samples[run] - only_stable[run] - only_candidate[run]
        counts = PairedCounts(both_right, 0.0, only_stable[run], only_candidate[run])
        assert (lower[run], upper[run]) == pytest.approx(
            paired_difference_interval(counts, paired.CONFIDENCE), abs=1e-9
        )
        assert verdicts[run] == expected[judge_paired(counts, criteria).verdict.value]


def test_the_cells_have_the_stated_accuracies_and_error_correlation() -> None:
    cells = paired.cell_probabilities(0.92, 0.90, 0.6)
    both_right, _, only_stable, only_candidate = cells
    assert cells.sum() == pytest.approx(1.0)
    assert both_right + only_stable == pytest.approx(0.92)
    assert both_right + only_candidate == pytest.approx(0.90)
    covariance = both_right - 0.92 * 0.90
    assert covariance / np.sqrt(0.92 * 0.08 * 0.90 * 0.10) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="no joint distribution"):
        paired.cell_probabilities(0.92, 0.5, 0.99)


def test_streaks_decide_once_and_inconclusive_checks_keep_them() -> None:
    verdict = np.array([[1, -1, 0], [0, -1, 1], [1, 1, 1], [1, -1, 1], [-1, -1, 1]])
    decided_at, decision = paired.first_decisions(verdict)
    assert decided_at.tolist() == [4, 0, 4]
    assert decision.tolist() == [1, 0, 1]


@pytest.fixture(scope="module")
def shadow_rows() -> list[paired.PairedRow]:
    return paired.simulate(300, seed=3, correlations=(0.0, 0.8), max_checks=150)


def row(rows: list[paired.PairedRow], correlation: float, difference: float) -> paired.PairedRow:
    return next(r for r in rows if (r.correlation, r.difference) == (correlation, difference))


def test_an_equally_good_candidate_is_accepted_and_a_worse_one_rejected(
    shadow_rows: list[paired.PairedRow],
) -> None:
    for correlation in (0.0, 0.8):
        assert row(shadow_rows, correlation, 0.0).results["paired"].accepted >= 0.98
        assert row(shadow_rows, correlation, -0.02).results["paired"].rejected >= 0.98


def test_pairing_saves_labels_when_the_models_share_their_errors(shadow_rows: list[paired.PairedRow]) -> None:
    correlated, independent = row(shadow_rows, 0.8, -0.02), row(shadow_rows, 0.0, -0.02)
    assert correlated.discordance < independent.discordance
    assert correlated.labels_ratio > 1.5
    assert correlated.labels_ratio > independent.labels_ratio
    table = paired.render(shadow_rows)
    assert "| 0.8 | 3.4% | -0.02 | not rejected |" in table


def test_main_prints_the_shadow_table_and_its_goals(capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = decisions.main(["--runs", "20", "--steady-runs", "0", "--paired-runs", "200", "--seed", "2"])
    output = capsys.readouterr().out
    paired_rows = [
        line for line in output.splitlines() if line.count("|") == 12 and "%" in line and "99%" not in line
    ]
    assert len(paired_rows) == len(paired.CORRELATIONS) * len(paired.DIFFERENCES)
    goal_line = next(line for line in output.splitlines() if line.startswith("Goals of the shadow"))
    assert goal_line.count("PASS") + goal_line.count("FAIL") == 3
    assert "within 50,000 labelled ids" in goal_line
    assert exit_code in (0, 1)
