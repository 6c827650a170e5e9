"""Several operator replicas with Lease leader election: one acts, a standby takes over after
the leader is SIGKILLed, and rolling the replicas like the chart's Deployment does (start the
new one, then SIGTERM the old) under load handles each change and each action exactly once."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from harness.cluster import REPO_ROOT
from harness.helm import CHART, Helm
from harness.models import TrainedModel
from harness.processes import LocalProcess
from harness.waiting import wait_for

from .conftest import Stack, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.story]
LEASE = "vigil-operator"
LEASE_DURATION = 15.0  # the operator's default, as the chart runs it
FIGURES = REPO_ROOT / ".work" / "ha"
LEADING = re.compile(r"leading as (\S+) .* at (\d+\.\d+)")
STOPPED = re.compile(r"stopped acting at (\d+\.\d+)")


@pytest.fixture
def chart_args(stack: Stack, tmp_path: Path) -> list[str]:
    """The arguments of the chart's Deployment, released into the test's namespace and watching
    it: leader election on the chart's Lease, with the chart's timings. (kwok runs no operator
    pod, so the replicas are local processes, with the admin kubeconfig: tests/e2e/test_rbac.py
    runs the chart's arguments with its ServiceAccount's token.)"""
    rendered = Helm(stack.cluster, tmp_path / "helm")(
        "template", "vigil", str(CHART), "--namespace", stack.namespace,
        "--set", f"watchNamespaces={{{stack.namespace}}}",
    ).stdout  # fmt: skip
    deployment = next(o for o in yaml.safe_load_all(rendered) if o and o["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args
    assert f"--leader-elect-resource-namespace={stack.namespace}" in args
    return args


def start_replica(stack: Stack, args: list[str]) -> LocalProcess:
    """One more replica of the chart's Deployment (its own ports are free ones)."""
    return stack.start_operator(args=args)


def leading(process: LocalProcess) -> bool:
    return LEADING.search(process.log()) is not None


def lease_holder(stack: Stack) -> str:
    lease = stack.api.get(f"/apis/coordination.k8s.io/v1/namespaces/{stack.namespace}/leases/{LEASE}")
    return lease["spec"].get("holderIdentity") or ""


def record(name: str, figures: dict) -> Path:
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"{name}: {figures} (written to {path})")
    return path


def test_standby_takes_over_after_the_leader_is_killed(
    stack: Stack, models: dict[str, TrainedModel], chart_args: list[str]
) -> None:
    first, second = start_replica(stack, chart_args), start_replica(stack, chart_args)
    leader = wait_for(
        lambda: next((p for p in (first, second) if leading(p)), None), timeout=60, what="a leader"
    )
    standby = second if leader is first else first
    holder = LEADING.search(leader.log())[1]  # type: ignore[index]
    assert lease_holder(stack) == holder
    url = stack.prometheus.url

    stack.apply(model_deployment("iris", stack.namespace, "v1", models["good"], prometheus_url=url))
    stack.wait_status("iris", promoted("v1"), what="v1 promoted by the leader")
    assert "RolloutStarted" in leader.log()
    assert not leading(standby)
    assert "RolloutStarted" not in standby.log(), "the standby must not act while the leader lives"

    leader.kill()  # SIGKILL: no release, the standby must wait for the Lease to expire
    killed = time.monotonic()
    stack.apply(model_deployment("iris", stack.namespace, "v2", models["good-too"], prometheus_url=url))
    wait_for(lambda: leading(standby), timeout=2 * LEASE_DURATION + 10, what="the standby leading")
    took_over = time.monotonic()
    wait_for(
        lambda: stack.deployment_version("iris") == "v2", timeout=30, what="v2 applied by the new leader"
    )
    acted = time.monotonic()
    record(
        "failover", {"lease_acquired_s": round(took_over - killed, 2), "acted_s": round(acted - killed, 2)}
    )
    # Correctness, not speed: the standby waited for the Lease (it cannot act sooner), then acted.
    assert took_over - killed <= 2 * LEASE_DURATION

    stack.wait_status("iris", promoted("v2"), timeout=180, what="v2 promoted by the new leader")
    assert lease_holder(stack) != holder
    assert stack.wait_reason("iris", "RolloutStarted", count=2).count("RolloutStarted") == 2


ROLLS = 4  # at least
MODELS = ("iris-a", "iris-b")
VERSIONS = 3  # per ModelDeployment, each promoted by annotation (automatic promotion is off)


def test_rolling_the_replicas_under_load_handles_each_action_once(
    stack: Stack, models: dict[str, TrainedModel], chart_args: list[str]
) -> None:
    """The chart's rolling update (maxSurge 1, maxUnavailable 0), over and over while every
    ModelDeployment is given new versions and `promote` actions: each change starts exactly one
    rollout, each action is handled exactly once, and no two replicas ever lead at once."""
    url = stack.prometheus.url
    # Never promoted automatically: only the annotation promotes, so every promotion is counted.
    analysis = {"successLimit": 1000}
    replicas = [start_replica(stack, chart_args)]
    wait_for(lambda: leading(replicas[0]), timeout=60, what="the first replica leading")
    done = threading.Event()

    def drive(name: str) -> int:
        """New versions one after another, each promoted by annotation once it is analysed."""
        for number in range(1, VERSIONS + 1):
            version = f"v{number}"
            stack.apply(
                model_deployment(
                    name, stack.namespace, version, models["good"], prometheus_url=url, **analysis
                )
            )
            stack.wait_status(
                name,
                lambda s, v=version: s.get("phase") == "Analyzing" and s.get("currentVersion") == v,
                timeout=180,
                what=f"{version} under analysis",
            )
            stack.cluster.kubectl(
                "annotate", "mdep", name, "-n", stack.namespace, "vigil.dev/action=promote", "--overwrite"
            )
            stack.wait_status(name, promoted(version), timeout=120, what=f"{version} promoted by annotation")
        return VERSIONS

    with ThreadPoolExecutor(len(MODELS)) as pool:
        driving = [pool.submit(drive, name) for name in MODELS]
        pool.submit(lambda: [f.result() for f in driving]).add_done_callback(lambda _: done.set())
        # Roll for as long as the ModelDeployments change (and at least ROLLS times).
        while not done.is_set() or len(replicas) <= ROLLS:
            replicas.append(start_replica(stack, chart_args))  # maxSurge 1: the new pod starts first ...
            assert replicas[-2].stop(timeout=40) == 0  # ... then the old one is terminated
            wait_for(lambda: leading(replicas[-1]), timeout=30, what="the new replica leading")
            done.wait(3)  # let the new leader act for a while before the next roll
        for future in driving:
            future.result()

    rolls = len(replicas) - 1
    for name in MODELS:
        reasons = stack.wait_reason(name, "Promoted", count=VERSIONS, timeout=30)
        assert reasons.count("RolloutStarted") == VERSIONS, reasons
        assert reasons.count("Promoted") == VERSIONS, reasons
        assert "ActionIgnored" not in reasons, f"an action was handled twice: {reasons}"
        assert "vigil.dev/action" not in (stack.mdep(name)["metadata"].get("annotations") or {})
    # Leadership passed on each roll, and each replica began to lead only after the one before
    # stopped acting (its own log's wall clock: the same machine).
    periods = []
    for replica in replicas:
        started = LEADING.search(replica.log())
        stopped = STOPPED.search(replica.log())
        if started:
            periods.append((float(started[2]), float(stopped[1]) if stopped else float("inf")))
    assert len(periods) == len(replicas) >= 2, periods
    for (_, end), (start, _) in itertools.pairwise(periods):
        assert end <= start, f"two replicas acted at once: {periods}"
    handovers = [round(start - end, 2) for (_, end), (start, _) in itertools.pairwise(periods)]
    lease = stack.api.get(f"/apis/coordination.k8s.io/v1/namespaces/{stack.namespace}/leases/{LEASE}")
    assert lease["spec"]["leaseTransitions"] == rolls, "each roll passed the Lease on exactly once"
    assert lease["spec"]["holderIdentity"] == LEADING.search(replicas[-1].log())[1]  # type: ignore[index]
    record(
        "rolling",
        {
            "rolls": rolls,
            "rollouts_started": VERSIONS * len(MODELS),
            "promote_actions": VERSIONS * len(MODELS),
            "handled": sum(stack.reasons(name).count("Promoted") for name in MODELS),
            "ignored": sum(stack.reasons(name).count("ActionIgnored") for name in MODELS),
            "handover_s": handovers,
        },
    )
