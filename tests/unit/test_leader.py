"""Leader election's pure rules: who acquires, renews, stands by, steps down, and a simulation
of several candidates sharing one Lease that checks two never act at once."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil_operator.leader import (
    Decision,
    LeaseRecord,
    Observed,
    Step,
    Timing,
    decide,
    next_wait,
    observe,
    record_from_spec,
    released,
    spec_of,
)

TIMING = Timing()
WALL = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ME, OTHER = "vigil-operator-a_1", "vigil-operator-b_2"


def held_by(holder: str, *, transitions: int = 3, duration: int = 15) -> LeaseRecord:
    return LeaseRecord(holder, duration, WALL, WALL, transitions)


def decision(observed: Observed | None, now: float, renewed_at: float | None = None) -> Decision:
    return decide(observed, identity=ME, now=now, wall=WALL, timing=TIMING, renewed_at=renewed_at)


def test_no_lease_creates_one_held_by_us() -> None:
    made = decision(None, now=0.0)
    assert made.step is Step.CREATE
    assert made.write == LeaseRecord(ME, 15, WALL, WALL, 0)


def test_a_live_lease_of_another_is_left_alone_until_it_expires_on_our_clock() -> None:
    seen = Observed(held_by(OTHER), "1", since=100.0)
    waiting = decision(seen, now=110.0)
    assert waiting.step is Step.STAND_BY
    assert waiting.write is None
    assert waiting.retry_in == TIMING.retry_period
    # Close to the end, the next look is when it expires, not a whole retry period later.
    assert decision(seen, now=114.5).retry_in == pytest.approx(0.5)
    taken = decision(seen, now=115.0)
    assert taken.step is Step.ACQUIRE
    assert taken.write == LeaseRecord(ME, 15, WALL, WALL, 4), "a new holder counts one more transition"


def test_the_records_renew_time_is_never_compared_with_our_clock() -> None:
    """A renewTime an hour old (the other node's clock is behind) is still a live Lease: only
    how long we saw it unchanged counts."""
    stale_looking = LeaseRecord(OTHER, 15, WALL - timedelta(hours=1), WALL - timedelta(hours=1), 1)
    assert decision(Observed(stale_looking, "1", since=50.0), now=51.0).step is Step.STAND_BY


def test_a_released_lease_is_taken_at_once() -> None:
    free = released(held_by(OTHER, transitions=7), WALL)
    assert free.holder == ""
    assert free.transitions == 7
    taken = decision(Observed(free, "1", since=10.0), now=10.0)
    assert taken.step is Step.ACQUIRE
    assert taken.write is not None
    assert taken.write.transitions == 8


def test_the_holder_renews_and_keeps_its_acquire_time_and_transitions() -> None:
    mine = LeaseRecord(ME, 15, WALL - timedelta(minutes=5), WALL - timedelta(seconds=2), 3)
    renewed = decision(Observed(mine, "1", since=0.0), now=2.0, renewed_at=0.0)
    assert renewed.step is Step.RENEW
    assert renewed.write == LeaseRecord(ME, 15, WALL - timedelta(minutes=5), WALL, 3)


def test_a_leader_steps_down_at_its_renew_deadline_before_the_lease_expires() -> None:
    mine = Observed(held_by(ME), "1", since=0.0)
    assert decision(mine, now=9.9, renewed_at=0.0).step is Step.RENEW
    assert decision(mine, now=10.0, renewed_at=0.0).step is Step.STEP_DOWN
    # The last look before the deadline waits only until the deadline.
    assert next_wait(decision(mine, now=9.0, renewed_at=0.0), 0.0, 9.0, TIMING) == pytest.approx(1.0)


def test_a_leader_that_finds_another_holder_or_no_lease_steps_down_at_once() -> None:
    assert decision(Observed(held_by(OTHER), "1", since=5.0), now=5.0, renewed_at=4.0).step is Step.STEP_DOWN
    assert decision(None, now=5.0, renewed_at=4.0).step is Step.STEP_DOWN


def test_observing_keeps_the_first_sighting_until_the_lease_is_written_again() -> None:
    first = observe(None, held_by(OTHER), "7", now=1.0)
    assert observe(first, held_by(OTHER), "7", now=9.0).since == 1.0
    renewed = replace_renew(held_by(OTHER), seconds=2)
    assert observe(first, renewed, "8", now=9.0).since == 9.0
    # A renewal with the same renewTime (the holder's clock stuck) is a renewal all the same.
    assert observe(first, held_by(OTHER), "9", now=9.0).since == 9.0


def replace_renew(record: LeaseRecord, seconds: int) -> LeaseRecord:
    assert record.renew_time is not None
    return LeaseRecord(
        record.holder,
        record.duration_seconds,
        record.acquire_time,
        record.renew_time + timedelta(seconds=seconds),
        record.transitions,
    )


def test_the_holders_own_lease_duration_is_what_others_wait() -> None:
    short = Observed(held_by(OTHER, duration=1), "1", since=0.0)
    assert decision(short, now=1.0).step is Step.ACQUIRE
    # A record without a duration (written by hand) waits our own.
    unset = Observed(held_by(OTHER, duration=0), "1", since=0.0)
    assert decision(unset, now=14.0).step is Step.STAND_BY


@pytest.mark.parametrize(
    ("lease", "renew", "retry"),
    [(10, 10, 2), (15, 10, 9), (15, 20, 2), (15, 10, 0)],
)
def test_timings_that_cannot_be_safe_are_refused(lease: float, renew: float, retry: float) -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline"):
        Timing(lease, renew, retry)


def test_the_spec_round_trips_with_microsecond_times() -> None:
    record = LeaseRecord(ME, 15, WALL, WALL + timedelta(microseconds=123456), 2)
    spec = spec_of(record)
    assert spec["renewTime"] == "2026-11-30T12:00:00.123456Z"
    assert record_from_spec(spec) == record


@pytest.mark.parametrize(
    "spec",
    [
        None,
        "holder",
        {"holderIdentity": 7, "leaseDurationSeconds": "15", "renewTime": "yesterday"},
        {"leaseDurationSeconds": -4, "leaseTransitions": -1, "acquireTime": 12},
    ],
)
def test_a_malformed_lease_reads_as_unset_fields(spec: object) -> None:
    record = record_from_spec(spec)  # type: ignore[arg-type]
    assert record.holder == ""
    assert record.duration_seconds == 0
    assert record.transitions == 0
    assert record.renew_time is None


# The simulation (every written renewTime is the same WALL, so only resourceVersions tell
# renewals apart): candidates on one Lease with optimistic concurrency, each with its own clock
# running at a rate within DRIFT of real time, every request and answer delayed (an answer is
# sometimes lost), candidates crashing or releasing the Lease on the way out and being replaced.
DRIFT = 0.05
DELAY = 0.8  # the most a request or an answer takes
HORIZON = 150.0


@dataclass
class Store:
    """The API server's copy of the Lease: a record and its resourceVersion."""

    record: LeaseRecord | None = None
    version: int = 0

    def write(self, record: LeaseRecord, expected: int | None) -> bool:
        """Create (expected None) or replace at a resourceVersion; False: 409 Conflict."""
        if (self.record is None) != (expected is None) or (expected is not None and expected != self.version):
            return False
        self.record, self.version = record, self.version + 1
        return True


@dataclass
class Candidate:
    identity: str
    rate: float  # its clock's rate against real time
    offset: float
    observed: Observed | None = None
    version: int | None = None
    renewed_at: float | None = None  # its clock
    acting_since: float | None = None  # real time
    alive: bool = True
    acting: list[tuple[float, float]] = field(default_factory=list)

    def clock(self, real: float) -> float:
        return self.offset + self.rate * real

    def real(self, local: float) -> float:
        return (local - self.offset) / self.rate

    def stop(self, real: float) -> None:
        if self.acting_since is not None:
            self.acting.append((self.acting_since, real))
        self.acting_since, self.alive = None, False


class Simulation:
    """A discrete-event run: reads are served and writes applied at their own real times."""

    def __init__(self, rng: random.Random, releases: bool, loss: float) -> None:
        self.rng, self.releases, self.loss = rng, releases, loss
        self.store = Store()
        self.everyone: list[Candidate] = []
        self.events: list[tuple[float, int, str, int, object]] = []
        self.counter = 0

    def at(self, when: float, kind: str, index: int, payload: object = None) -> None:
        self.counter += 1
        heapq.heappush(self.events, (when, self.counter, kind, index, payload))

    def delay(self) -> float:
        return self.rng.uniform(0, DELAY)

    def start(self, when: float) -> None:
        rate = 1 + self.rng.uniform(-DRIFT, DRIFT)
        self.everyone.append(Candidate(f"c{len(self.everyone)}", rate, self.rng.uniform(-1e4, 1e4)))
        self.at(when, "read", len(self.everyone) - 1)

    def run(self, candidates: int, stops: list[float]) -> list[Candidate]:
        for _ in range(candidates):
            self.start(self.rng.uniform(0, 5))
        for when in stops:
            self.at(when, "stop", -1)
        while self.events:
            when, _, kind, index, payload = heapq.heappop(self.events)
            if when > HORIZON:
                break
            if kind == "stop":
                self.stop_someone(when)
            elif kind == "apply":  # a write already sent lands even if its sender died since
                record, expected, ack = payload  # type: ignore[misc]
                ok = self.store.write(record, expected)
                if ack:
                    self.at(when + self.delay(), "ack", index, (ok, self.store.version, ack))
            elif self.everyone[index].alive:
                getattr(self, kind)(when, self.everyone[index], index, payload)
        for candidate in self.everyone:
            if candidate.acting_since is not None:
                candidate.acting.append((candidate.acting_since, HORIZON))
        return self.everyone

    def read(self, when: float, me: Candidate, index: int, _: object) -> None:
        self.at(when + self.delay(), "served", index)

    def served(self, when: float, me: Candidate, index: int, _: object) -> None:
        self.at(when + self.delay(), "answered", index, (self.store.record, self.store.version))

    def answered(self, when: float, me: Candidate, index: int, payload: object) -> None:
        record, version = payload  # type: ignore[misc]
        now = me.clock(when)
        me.observed = observe(me.observed, record, str(version), now) if record is not None else None
        me.version = version if record is not None else None
        made = decide(
            me.observed, identity=me.identity, now=now, wall=WALL, timing=TIMING, renewed_at=me.renewed_at
        )
        if made.step is Step.STEP_DOWN:
            self.step_down(when, me)
        elif made.write is not None:
            self.at(when + self.delay(), "apply", index, (made.write, me.version, (now, made)))
        else:
            self.at(me.real(now + next_wait(made, me.renewed_at, now, TIMING)), "read", index)

    def ack(self, when: float, me: Candidate, index: int, payload: object) -> None:
        ok, version, (sent, made) = payload  # type: ignore[misc]
        now = me.clock(when)
        if (
            ok and self.rng.random() >= self.loss
        ):  # else the answer was lost: a failed write, as far as it knows
            me.renewed_at, me.version = sent, version
            if me.acting_since is None:
                me.acting_since = when
            me.observed = observe(me.observed, made.write, str(version), now)
            self.at(me.real(sent + TIMING.renew_deadline), "deadline", index, sent)
        self.at(me.real(now + next_wait(made, me.renewed_at, now, TIMING)), "read", index)

    def deadline(self, when: float, me: Candidate, index: int, renewed_at: object) -> None:
        if me.renewed_at == renewed_at:  # no renewal since: the shell's timer fires
            self.step_down(when, me)

    def step_down(self, when: float, me: Candidate) -> None:
        me.stop(when)
        self.start(when + self.rng.uniform(1, 10))  # the process exits and is restarted

    def stop_someone(self, when: float) -> None:
        """SIGKILL (or SIGTERM, which releases) the leader if there is one, else anyone."""
        alive = [c for c in self.everyone if c.alive]
        if not alive:
            return
        leaders = [c for c in alive if c.acting_since is not None]
        victim = self.rng.choice(leaders or alive)
        leading = victim.acting_since is not None
        victim.stop(when)  # stop acting first ...
        if self.releases and leading and self.store.record is not None:  # ... then release
            index = self.everyone.index(victim)
            self.at(
                when + self.delay(), "apply", index, (released(self.store.record, WALL), victim.version, None)
            )
        self.start(when + self.rng.uniform(1, 10))


def acting_intervals(
    rng: random.Random, candidates: int, stops: int, releases: bool, loss: float = 0.1
) -> list[tuple[float, float, str]]:
    """Each acting interval (real time) of every candidate of one run, in order of start."""
    moments = sorted(rng.uniform(5, HORIZON - 40) for _ in range(stops))
    everyone = Simulation(rng, releases, loss).run(candidates, moments)
    return sorted((start, end, c.identity) for c in everyone for start, end in c.acting)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    candidates=st.integers(1, 3),
    stops=st.integers(0, 4),
    releases=st.booleans(),
)
def test_two_candidates_never_act_at_once(seed: int, candidates: int, stops: int, releases: bool) -> None:
    intervals = acting_intervals(random.Random(seed), candidates, stops, releases)
    for (_, end, first), (start, _, second) in itertools.pairwise(intervals):
        assert end <= start, f"{first} acted until {end:.2f} s, {second} from {start:.2f} s"


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), candidates=st.integers(2, 3), releases=st.booleans())
def test_someone_leads_again_soon_after_the_leader_stops(seed: int, candidates: int, releases: bool) -> None:
    intervals = acting_intervals(random.Random(seed), candidates, 1, releases, loss=0.0)  # one failure only
    assert intervals, "nobody ever led"
    # A leader that dies holds the Lease until its duration has passed on the
    # slowest clock since its last write, then a standby needs a retry and the requests' delays;
    # a replacement candidate takes up to 10 s to start.
    worst = (TIMING.lease_duration + TIMING.retry_period) / (1 - DRIFT) + 10 + 6 * DELAY
    for (_, end, _), (start, _, _) in itertools.pairwise(intervals):
        assert start - end <= worst


def test_the_identity_is_the_pods_name_and_uid_else_unique_per_process() -> None:
    from vigil_operator.election import own_identity

    assert (
        own_identity({"POD_NAME": "vigil-operator-7d9f-x2", "POD_UID": "1b2c"})
        == "vigil-operator-7d9f-x2_1b2c"
    )
    assert own_identity({}) != own_identity({}), "two processes on one host are two candidates"


def test_leader_election_flags() -> None:
    from vigil_operator.main import parse_args

    args = parse_args(
        ["--leader-elect", "--leader-elect-resource-namespace", "ops", "--leader-elect-lease-duration", "12s"]
    )
    assert args.leader_elect_timing == Timing(12, 10, 2)
    assert args.leader_elect_resource_name == "vigil-operator"
    assert not parse_args([]).leader_elect
    with pytest.raises(SystemExit):
        parse_args(
            [
                "--leader-elect",
                "--leader-elect-resource-namespace",
                "ops",
                "--leader-elect-renew-deadline",
                "20",
            ]
        )
    with pytest.raises(SystemExit):
        parse_args(["--leader-elect-retry-period", "0"])


def test_leader_election_needs_the_leases_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    from vigil_operator.main import parse_args

    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    with pytest.raises(SystemExit):
        parse_args(["--leader-elect"])
    monkeypatch.setenv("POD_NAMESPACE", "vigil-system")
    assert parse_args(["--leader-elect"]).leader_elect_resource_namespace == "vigil-system"
