"""The leader election shell against the real API server: two candidates in one process, with
short timings, on a real coordination.k8s.io Lease (create, resourceVersion-guarded replace)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from harness.cluster import LocalCluster
from harness.kubeapi import KubeApi
from vigil_operator import kube
from vigil_operator.election import Elector
from vigil_operator.leader import Timing

pytestmark = pytest.mark.cluster
FAST = Timing(lease_duration=3, renew_deadline=2, retry_period=0.5)


@pytest.fixture
def kubeconfig(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    return cluster.kubeconfig


def lease(cluster: LocalCluster, namespace: str) -> dict:
    api = KubeApi(cluster.kubeconfig)
    try:
        return api.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/vigil-operator")
    finally:
        api.close()


def test_one_leads_the_other_waits_then_takes_over_on_release_or_expiry(
    cluster: LocalCluster, namespace: str, kubeconfig: Path
) -> None:
    async def scenario() -> dict[str, float]:
        api = await kube.new_client()
        first = Elector(api, namespace, "vigil-operator", "first", FAST)
        second = Elector(api, namespace, "vigil-operator", "second", FAST)
        try:
            await asyncio.wait_for(first.acquire(), 10)
            renewing = asyncio.create_task(first.keep_leading())
            waiting = asyncio.create_task(second.acquire())
            await asyncio.sleep(FAST.lease_duration * 2)  # several lease durations of renewals
            assert not waiting.done(), "the second took a Lease that was being renewed"
            # A clean stop: the first releases, the second takes over at its next look.
            renewing.cancel()
            await first.release()
            released = time.monotonic()
            await asyncio.wait_for(waiting, 10)
            handover = time.monotonic() - released
            # A crash: the second stops renewing without releasing; the first waits out the lease.
            retaking = asyncio.create_task(first.acquire())
            await asyncio.sleep(FAST.retry_period * 2)
            assert not retaking.done()
            crashed = time.monotonic()
            await asyncio.wait_for(retaking, 10)
            return {"handover": handover, "expiry": time.monotonic() - crashed}
        finally:
            await api.close()

    figures = asyncio.run(scenario())
    assert figures["handover"] <= FAST.retry_period + 1
    assert figures["expiry"] >= FAST.lease_duration - FAST.retry_period * 2 - 0.5
    spec = lease(cluster, namespace)["spec"]
    assert spec["holderIdentity"] == "first"
    assert spec["leaseTransitions"] == 2  # first, then second, then first again
    assert spec["leaseDurationSeconds"] == 3


def test_a_leader_whose_lease_is_taken_steps_down(
    cluster: LocalCluster, namespace: str, kubeconfig: Path
) -> None:
    async def scenario() -> None:
        api = await kube.new_client()
        leader = Elector(api, namespace, "vigil-operator", "leader", FAST)
        try:
            await asyncio.wait_for(leader.acquire(), 10)
            renewing = asyncio.create_task(leader.keep_leading())
            await asyncio.sleep(FAST.retry_period)
            # Someone (a person, a clock far off) writes another holder into the Lease. The leader
            # renews every retry period: a renewal between our read and write is a 409, read again.
            for _ in range(20):
                found = await kube.read_lease(api, namespace, "vigil-operator", 5)
                assert found is not None
                spec, version = found
                try:
                    await kube.write_lease(
                        api,
                        namespace,
                        "vigil-operator",
                        {**spec, "holderIdentity": "intruder"},
                        version,
                        labels={},
                        timeout=5,
                    )
                    break
                except kube.ApiException as error:
                    if error.status != 409:
                        raise
            else:
                pytest.fail("every write of the intruder's Lease met a renewal (409)")
            await asyncio.wait_for(renewing, FAST.retry_period * 3)
            assert not leader.leading
        finally:
            await api.close()

    asyncio.run(scenario())
