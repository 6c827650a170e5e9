"""A ModelDeployment's life, driven through the pure decision core the way the operator drives it.

`Scenario` plays the cluster and the shell: it feeds `decide()` the observed Deployment and the
checks that `check_due()` asks for, applies each decision (the Deployment starts rolling out the
target), and carries the facts forward, optionally through the stored status (a restart).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil_operator.analysis import Measurement
from vigil_operator.decisions import (
    Action,
    Decision,
    Event,
    Facts,
    Inputs,
    ObservedDeployment,
    Phase,
    QueryPlan,
    Reason,
    check_due,
    decide,
    phase_of,
    release_id,
)
from vigil_operator.queries import Target, builtin_accuracy_query
from vigil_operator.releases import AnalysisSpec, Release, StrategySpec
from vigil_operator.status import Condition, conditions_of, facts_from_status, status_of

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
IMAGE = "ghcr.io/vigil/vigil-model-server:0.1.0"
ANALYSIS = AnalysisSpec(prometheus_url="http://prometheus.monitoring:9090")
SECONDS_TO_BECOME_AVAILABLE = 5


def release(version: str, *, sha256: str | None = None, image: str = IMAGE) -> Release:
    return Release(version, f"http://models.ml.svc/iris/{version}/model.joblib", image, sha256)


V1, V2, V3 = release("v1"), release("v2"), release("v3")


def labelled(value: float, samples: float) -> Measurement:
    """What Prometheus answers for the built-in metric: `samples` labels, `value` of them right."""
    return Measurement(value=value, correct=round(value * samples), samples=samples)


def passing(value: float = 0.97, samples: float = 500) -> Measurement:
    """Clearly above the threshold: a pass before promotion, no evidence of a drop after it."""
    return labelled(value, samples)


def failing(value: float = 0.8, samples: float = 500) -> Measurement:
    """Clearly below the threshold: a fail before promotion, a breach of the watch after it."""
    return labelled(value, samples)


def inconclusive(samples: float = 40) -> Measurement:
    """Too few labels for the Wilson gate (minSamples 100); little evidence for the watch."""
    return labelled(0.9, samples)


def erroring(error: str = "connection refused") -> Measurement:
    return Measurement(error=error)


@dataclass
class Scenario:
    """One ModelDeployment: spec, facts, the Deployment in the cluster, a clock, events so far."""

    desired: Release
    analysis: AnalysisSpec = ANALYSIS
    restart_every_round: bool = False  # facts come back from the stored status each round
    facts: Facts = field(default_factory=Facts)
    now: datetime = T0
    deployment: ObservedDeployment | None = None  # the main Deployment
    events: list[Event] = field(default_factory=list)
    strategy: StrategySpec = field(default_factory=StrategySpec)
    replicas: int | None = None
    candidate_deployment: ObservedDeployment | None = None  # Shadow and Canary: the candidate's own
    decisions: list[Decision] = field(default_factory=list)

    # --- what drives a round ----------------------------------------------------------------

    def round(
        self,
        *,
        check: Measurement | None = None,
        plan: QueryPlan | None = None,
        query: str = "",
        action: Action | None = None,
    ) -> Decision:
        """One reconcile: decide, store the facts, let the shell apply the target."""
        decision = decide(
            Inputs(
                desired=self.desired,
                analysis=self.analysis,
                facts=self.facts,
                observed=self.deployment,
                now=self.now,
                measurement=check,
                plan=plan,
                query=query,
                action=action,
                strategy=self.strategy,
                observed_candidate=self.candidate_deployment,
                replicas=self.replicas,
            )
        )
        self.facts = self.stored(decision.facts) if self.restart_every_round else decision.facts
        self.events.extend(decision.events)
        self.decisions.append(decision)
        if self.deployment is None or self.deployment.release_id != decision.target_id:
            self.deployment = ObservedDeployment(decision.target_id, available=False, deadline_exceeded=False)
        candidate_id = decision.candidate_id
        if candidate_id is None:
            self.candidate_deployment = None
        elif self.candidate_deployment is None or self.candidate_deployment.release_id != candidate_id:
            self.candidate_deployment = ObservedDeployment(
                candidate_id, available=False, deadline_exceeded=False
            )
        return decision

    def stored(self, facts: Facts) -> Facts:
        """The facts a freshly started operator reads back from the status written now."""
        status = status_of(facts, self.analysis, self.desired, 1, self.now, replicas=self.replicas)
        return facts_from_status(status)

    def wait(self, seconds: float) -> Decision:
        self.now += timedelta(seconds=seconds)
        return self.round()

    def available(self) -> Decision:
        """The pods of what the Deployments run become ready (the candidate's too, if any)."""
        assert self.deployment is not None
        self.deployment = replace(self.deployment, available=True)
        if self.candidate_deployment is not None:
            tracks = self.last.tracks
            ready = tracks.candidate_replicas if tracks.candidate_in_service else 0
            self.candidate_deployment = replace(
                self.candidate_deployment, available=True, ready_in_service=ready
            )
        return self.wait(SECONDS_TO_BECOME_AVAILABLE)

    def deadline_exceeded(self) -> Decision:
        """The Deployment running the release under test reports ProgressDeadlineExceeded."""
        assert self.deployment is not None
        if self.candidate_deployment is not None and self.candidate_deployment.release_id == release_id(
            self.facts.current or self.desired, self.facts.retries
        ):
            self.candidate_deployment = replace(self.candidate_deployment, deadline_exceeded=True)
        else:
            self.deployment = replace(self.deployment, available=False, deadline_exceeded=True)
        return self.wait(SECONDS_TO_BECOME_AVAILABLE)

    def spec(self, desired: Release) -> Decision:
        """`kubectl apply` (or a GitOps sync) of a spec naming `desired`."""
        self.desired = desired
        return self.round()

    def act(self, action: Action) -> Decision:
        return self.round(action=action)

    def next_check_at(self) -> datetime:
        last = self.facts.last_check.time if self.facts.last_check else self.facts.serving_since
        assert last is not None, "nothing serves yet"
        return last + timedelta(seconds=self.analysis.interval)

    def check(self, outcome: Measurement) -> Decision:
        """Wait until the next check is due and run it with `outcome` as Prometheus' answer."""
        self.now = max(self.now, self.next_check_at())
        plan = check_due(self.facts, self.analysis, self.now)
        assert plan is not None, f"no check due in phase {self.phase}"
        assert self.facts.current is not None
        query = builtin_accuracy_query(Target("iris", "ml", self.facts.current.version), plan)
        return self.round(check=outcome, plan=plan, query=query)

    def checks(self, *outcomes: Measurement) -> list[Decision]:
        return [self.check(outcome) for outcome in outcomes]

    # --- what a test looks at ---------------------------------------------------------------

    @property
    def last(self) -> Decision:
        return self.decisions[-1]

    @property
    def target(self) -> Release:
        return self.last.target

    @property
    def phase(self) -> Phase:
        return phase_of(self.facts)

    def condition(self, kind: str) -> Condition:
        return next(c for c in conditions_of(self.facts, self.analysis, self.desired) if c.type == kind)

    def count(self, reason: Reason) -> int:
        return sum(1 for event in self.events if event.reason == reason)

    def only(self, reason: Reason) -> Event:
        found = [event for event in self.events if event.reason == reason]
        assert len(found) == 1, f"{len(found)} {reason} events: {found}"
        return found[0]


# --- the usual starting points ----------------------------------------------------------------


def first_version_analysing(**options: Any) -> Scenario:
    """v1 applied to a new ModelDeployment, rolled out and serving: analysis runs."""
    scenario = Scenario(V1, **options)
    scenario.round()
    scenario.available()
    assert scenario.phase is Phase.ANALYZING
    return scenario


def v1_stable(**options: Any) -> Scenario:
    scenario = first_version_analysing(**options)
    scenario.checks(*[passing()] * scenario.analysis.success_limit)
    assert scenario.phase is Phase.PROMOTED
    return scenario


def v2_analysing(**options: Any) -> Scenario:
    """v1 promoted, then spec moves to v2, which rolls out and serves under analysis."""
    scenario = v1_stable(**options)
    scenario.spec(V2)
    scenario.available()
    assert scenario.phase is Phase.ANALYZING
    return scenario


def v2_rolled_back(**options: Any) -> Scenario:
    """v2 failed its analysis and v1, restored, serves again."""
    scenario = v2_analysing(**options)
    scenario.checks(*[failing()] * scenario.analysis.failure_limit)
    scenario.available()
    assert scenario.phase is Phase.ROLLED_BACK
    return scenario


def v2_stable(**options: Any) -> Scenario:
    """v1 promoted, then v2 promoted after it."""
    scenario = v2_analysing(**options)
    scenario.checks(*[passing()] * scenario.analysis.success_limit)
    assert scenario.facts.stable == V2
    return scenario
