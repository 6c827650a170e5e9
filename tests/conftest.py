"""Shared fixtures: the local control plane, Prometheus and local processes.

Every test talks only to the cluster started here, through the kubeconfig written here.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cluster import LocalCluster
from harness.processes import ProcessGroup
from harness.prometheus import LocalPrometheus


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The session's local cluster (kwok, binary runtime), with Vigil's CRDs applied."""
    local = LocalCluster.start(tmp_path_factory.mktemp("cluster"))
    try:
        local.apply_crds()
        yield local
    finally:
        local.stop()


# Runs started with the session and judged by tests that run last (their markers).
BACKGROUND_MARKERS = ("soak", "realnode")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM ends a run like Ctrl-C: fixtures tear down (a real node, clusters) before exit.
    `make test` stops its background pytest this way; its SIGINT is ignored (a shell's `&`)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of background runs last: they only collect what runs started with the session saw."""
    items.sort(key=lambda item: any(item.get_closest_marker(m) for m in BACKGROUND_MARKERS))


@pytest.fixture(scope="session", autouse=True)
def real_node_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real-node scenario (tests/realnode/scenario.py), started as the session begins when
    its tests were collected, so that its minutes overlap the other tiers."""
    if not any(item.get_closest_marker("realnode") for item in request.session.items):
        yield None
        return
    from realnode.scenario import RealNodeRun

    run = RealNodeRun(tmp_path_factory.mktemp("realnode")).start()
    yield run
    run.stop()


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessGroup]:
    """Local processes for one test: stopped at teardown, logs attached when it fails."""
    group = ProcessGroup(log_dir=tmp_path / "logs")
    request.node.vigil_process_groups = [*getattr(request.node, "vigil_process_groups", []), group]
    yield group
    group.close()


@pytest.fixture
def prometheus(processes: ProcessGroup, tmp_path: Path) -> LocalPrometheus:
    """A real Prometheus with no targets yet; the test sets them with `set_targets`."""
    return LocalPrometheus.start(tmp_path / "prometheus", processes)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Attach the logs of the test's processes (and the cluster's, if used) to a failure."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for group in getattr(item, "vigil_process_groups", []):
        for name, text in group.logs().items():
            report.sections.append((f"log: {name}", text[-6000:]))
    local_cluster = getattr(item, "funcargs", {}).get("cluster")
    if isinstance(local_cluster, LocalCluster):
        report.sections.append(("cluster component logs", local_cluster.component_logs(tail=25)))
