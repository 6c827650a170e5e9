"""What a supervisor remembers between rounds (`reconcile.Memory`), and when it goes on from it."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from vigil_operator.reconcile import Memory, _unless_superseded
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


def test_an_event_with_a_new_generation_marks_the_round_superseded_and_an_echo_does_not() -> None:
    memory = remembered()
    memory.body["metadata"]["generation"] = 1
    memory.superseded.clear()
    memory.saw({"metadata": {"resourceVersion": "8", "generation": 1}, "status": {"phase": "Degraded"}})
    assert not memory.superseded.is_set()
    memory.saw({"metadata": {"resourceVersion": "9", "generation": 2}, "status": STORED})
    assert memory.superseded.is_set()


def test_a_check_still_waiting_when_the_round_is_superseded_is_cancelled_and_yields_none() -> None:
    async def run() -> tuple[object, bool]:
        memory = remembered()
        memory.superseded.clear()
        cancelled = asyncio.Event()

        async def slow_check() -> str:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "answer"

        async def spec_change() -> None:
            await asyncio.sleep(0.01)
            memory.saw({"metadata": {"resourceVersion": "9", "generation": 2}, "status": STORED})

        changer = asyncio.create_task(spec_change())
        result = await asyncio.wait_for(_unless_superseded(slow_check(), memory), timeout=5)
        await changer
        return result, cancelled.is_set()

    assert asyncio.run(run()) == (None, True)


def test_a_check_that_answers_first_is_returned() -> None:
    async def run() -> object:
        memory = remembered()
        memory.superseded.clear()

        async def check() -> str:
            return "answer"

        return await _unless_superseded(check(), memory)

    assert asyncio.run(run()) == "answer"


def test_a_failing_check_raises_its_own_error() -> None:
    async def run() -> object:
        memory = remembered()
        memory.superseded.clear()

        async def check() -> str:
            raise RuntimeError("prometheus down")

        return await _unless_superseded(check(), memory)

    with pytest.raises(RuntimeError, match="prometheus down"):
        asyncio.run(run())
