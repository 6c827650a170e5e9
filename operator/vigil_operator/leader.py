"""Leader election on a coordination.k8s.io/v1 Lease: the pure rules, client-go's semantics.

One replica holds the Lease and acts; the others stand by. A candidate never compares the
Lease's `renewTime` with its own clock (clocks differ between nodes): it notes, on its own
monotonic clock, when it first saw the record in its current form, and takes the Lease only
once `leaseDurationSeconds` have passed since then without a change (client-go's
`observedTime`), or at once when the holder released it (empty `holderIdentity`).

The holder renews every `retry_period`; if no renewal *sent* in the last `renew_deadline`
succeeded, it steps down (the shell stops every supervisor and exits). Why two never act:
the holder's last successful write was sent at real time `s`; it stops acting by
`s + renew_deadline / (1 - drift)`; any other candidate saw that record no earlier than it was
written (after `s`) and waits `lease_duration / (1 + drift)` of real time before writing its
own. So with clock rates within `drift` of real time, two never act at once as long as
`renew_deadline / (1 - drift) < lease_duration / (1 + drift)` (15 s and 10 s: any drift
under 19 %). Assumed beyond that: the holder's event loop is not frozen past its deadline
(a stopped process stops acting anyway) and writes already sent land within the 5 s margin
(every API call has a timeout); status writes are resourceVersion-guarded besides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Timing:
    """controller-runtime's defaults: lease 15 s, renew deadline 10 s, retry every 2 s."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        # client-go's own checks (leaderelection.NewLeaderElector), with its jitter factor 1.2.
        if not 0 < self.retry_period * 1.2 < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "need lease duration > renew deadline > 1.2 x retry period > 0, got "
                f"{self.lease_duration:g} s, {self.renew_deadline:g} s, {self.retry_period:g} s"
            )


@dataclass(frozen=True)
class LeaseRecord:
    """The spec of a Lease, as leader election reads and writes it."""

    holder: str = ""  # empty: free (released, or never held)
    duration_seconds: int = 0  # 0 or missing: the reader's own lease duration
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0


@dataclass(frozen=True)
class Observed:
    """The record a candidate last read, its resourceVersion, and when (on the candidate's
    monotonic clock) it first saw that version."""

    record: LeaseRecord
    version: str
    since: float


class Step(enum.StrEnum):
    CREATE = "create"  # there is no Lease: create it, held by us
    ACQUIRE = "acquire"  # free or expired: replace it with ours (resourceVersion-guarded)
    RENEW = "renew"  # ours: replace it with a fresh renewTime
    STAND_BY = "stand by"  # another candidate holds a live Lease
    STEP_DOWN = "step down"  # we led and can no longer be sure we still do: stop acting now


@dataclass(frozen=True)
class Decision:
    step: Step
    write: LeaseRecord | None  # what to store for CREATE, ACQUIRE and RENEW
    retry_in: float  # seconds until the next look at the Lease


def observe(previous: Observed | None, record: LeaseRecord, version: str, now: float) -> Observed:
    """Keep the time a Lease was first seen; any write (a renewal, a new holder) restarts it.

    A write is told by its resourceVersion, not by the record alone: two renewals with the
    same renewTime (a coarse or stuck clock on the holder) are still two renewals. `now` must
    be taken after the read returned: the record was written before that moment, never after,
    which is what makes the wait safe.
    """
    if previous is not None and previous.version == version and previous.record == record:
        return previous
    return Observed(record, version, now)


def decide(
    observed: Observed | None,
    *,
    identity: str,
    now: float,
    wall: datetime,
    timing: Timing,
    renewed_at: float | None,
) -> Decision:
    """What a candidate does next, given the Lease as last read (None: there is none).

    `now` is the candidate's monotonic clock, `wall` the time written into the record (for
    people and tools; no decision reads it). `renewed_at` is when the last successful write of
    ours was sent (monotonic), None while not leading.
    """
    if renewed_at is not None:
        if now >= renewed_at + timing.renew_deadline:
            return Decision(Step.STEP_DOWN, None, 0.0)
        if observed is None or observed.record.holder != identity:
            # Deleted, or taken over (a person, or a clock far off): never act beside another.
            return Decision(Step.STEP_DOWN, None, 0.0)
    if observed is None:
        fresh = LeaseRecord(identity, _whole(timing.lease_duration), wall, wall, 0)
        return Decision(Step.CREATE, fresh, timing.retry_period)
    record = observed.record
    if record.holder == identity:
        renewed = replace(record, duration_seconds=_whole(timing.lease_duration), renew_time=wall)
        return Decision(Step.RENEW, renewed, timing.retry_period)
    expires_in = observed.since + lease_duration(record, timing) - now
    if record.holder and expires_in > 0:
        return Decision(Step.STAND_BY, None, min(timing.retry_period, expires_in))
    taken = LeaseRecord(identity, _whole(timing.lease_duration), wall, wall, record.transitions + 1)
    return Decision(Step.ACQUIRE, taken, timing.retry_period)


def step_down_in(renewed_at: float, now: float, timing: Timing) -> float:
    """Seconds a leader may still act without a successful renewal; 0 or less: stop now."""
    return renewed_at + timing.renew_deadline - now


def next_wait(decision: Decision, renewed_at: float | None, now: float, timing: Timing) -> float:
    """Seconds until the next look: a leader always wakes by its step-down deadline."""
    if renewed_at is None:
        return max(0.0, decision.retry_in)
    return max(0.0, min(decision.retry_in, step_down_in(renewed_at, now, timing)))


def released(record: LeaseRecord, wall: datetime) -> LeaseRecord:
    """What a leader stepping down cleanly writes: no holder, so the next takes over at once
    (client-go's ReleaseOnCancel: empty holder, a 1 s lease, the transitions kept)."""
    return LeaseRecord("", 1, wall, wall, record.transitions)


def lease_duration(record: LeaseRecord, timing: Timing) -> float:
    """The holder's own lease duration (it chose how long others wait), else ours."""
    return float(record.duration_seconds) if record.duration_seconds > 0 else timing.lease_duration


def _whole(seconds: float) -> int:
    """leaseDurationSeconds is an integer: round up, so no one waits less than asked."""
    return max(1, int(-(-seconds // 1)))


# The Lease's spec on the wire: MicroTime strings with exactly six fractional digits.
MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def record_from_spec(spec: dict[str, Any] | None) -> LeaseRecord:
    """The record in a Lease's spec; missing or malformed fields read as unset, never raise
    (anyone who may edit the Lease may write anything into it)."""
    spec = spec if isinstance(spec, dict) else {}
    holder = spec.get("holderIdentity")
    duration = spec.get("leaseDurationSeconds")
    transitions = spec.get("leaseTransitions")
    return LeaseRecord(
        holder=holder if isinstance(holder, str) else "",
        duration_seconds=duration if isinstance(duration, int) and duration > 0 else 0,
        acquire_time=_parse_time(spec.get("acquireTime")),
        renew_time=_parse_time(spec.get("renewTime")),
        transitions=transitions if isinstance(transitions, int) and transitions >= 0 else 0,
    )


def spec_of(record: LeaseRecord) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.duration_seconds,
        "leaseTransitions": record.transitions,
    }
    if record.acquire_time is not None:
        spec["acquireTime"] = _format_time(record.acquire_time)
    if record.renew_time is not None:
        spec["renewTime"] = _format_time(record.renew_time)
    return spec


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(MICRO_TIME)


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, datetime):  # the client library parses MicroTime itself
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
