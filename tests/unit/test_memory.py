"""What a supervisor remembers between rounds (`reconcile.Memory`), and when it goes on from it."""

from __future__ import annotations

from dataclasses import replace

from vigil_operator.reconcile import Memory
from vigil_operator.status import facts_from_status

STORED = {"phase": "Promoted", "currentVersion": "v1"}


def remembered() -> Memory:
    memory = Memory(body={"metadata": {"resourceVersion": "7"}, "status": STORED})
    memory.facts = replace(facts_from_status(STORED), retries=3)  # ahead of the stored status
    memory.status_seen = dict(STORED)
    return memory


def test_a_round_goes_on_from_its_own_facts_while_the_status_is_the_one_they_went_on_from() -> None:
    memory = remembered()
    assert memory.facts_to_go_on(dict(STORED)) is memory.facts


def test_a_status_written_by_someone_else_wins_over_the_remembered_facts() -> None:
    memory = remembered()
    other = {**STORED, "currentVersion": "v2"}
    assert memory.facts_to_go_on(other) == facts_from_status(other)


def test_a_conflict_drops_the_body_but_not_the_facts() -> None:
    memory = remembered()
    memory.stale()
    assert memory.body is None
    assert memory.facts_to_go_on(dict(STORED)) is memory.facts


def test_a_failed_round_forgets_everything() -> None:
    memory = remembered()
    memory.forget()
    assert memory.body is None
    assert memory.facts_to_go_on(dict(STORED)) == facts_from_status(STORED)
