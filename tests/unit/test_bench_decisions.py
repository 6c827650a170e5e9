"""bench/decisions.py: the simulation's shape and the direction of its numbers (few runs, no timing)."""

from __future__ import annotations

import decisions
import pytest

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
    exit_code = decisions.main(["--runs", "200", "--seed", "5"])
    output = capsys.readouterr().out
    table_rows = [line for line in output.splitlines() if line.startswith("| ")]
    expected_rows = 1 + len(decisions.TRUE_ACCURACIES) * len(decisions.PREDICTIONS_PER_CHECK)
    assert len(table_rows) == expected_rows
    goal_line = next(line for line in output.splitlines() if line.startswith("Goals"))
    assert goal_line.count("PASS") + goal_line.count("FAIL") == 3
    assert exit_code == (1 if "FAIL" in goal_line else 0)
