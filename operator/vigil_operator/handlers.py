"""Kopf wiring: one supervisor task per ModelDeployment, woken by events or by its own timer.

Handlers only start, wake and stop supervisors, and keep what the watches saw (the object's
last event body, Kopf indexes of the owned Deployments and Services); every round is
`reconcile.reconcile_once`.
Plain event handlers (no daemons, no change handlers) mean Kopf adds no finalizers and
writes nothing to the objects: deleting a ModelDeployment never waits for the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from vigil_operator import constants as c
from vigil_operator import kube, metrics, pacing, prometheus
from vigil_operator.batcher import Batcher
from vigil_operator.config import Config
from vigil_operator.reconcile import Memory, reconcile_once

# On shutdown, how long rounds in flight may take to finish. A round cut between its status
# write and the removal of the action annotation would have the next leader act on it again.
DRAIN_SECONDS = 10.0
logger = logging.getLogger("vigil")
OWNED = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"


class Supervisors:
    """The running supervisor of each ModelDeployment, the event that wakes it, and its memory."""

    def __init__(self, config: Config, cache: kube.WatchCache | None = None) -> None:
        self.config = config
        self.cache = cache or kube.WatchCache()
        # One query per tick per Prometheus for the built-in checks (None: one query per check).
        self.batcher = (
            Batcher(window=config.batch_window, concurrency=config.prometheus_concurrency)
            if config.batch_window > 0
            else None
        )
        self.tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.wakeups: dict[tuple[str, str], asyncio.Event] = {}
        self.memories: dict[tuple[str, str], Memory] = {}
        self.in_round: set[tuple[str, str]] = set()
        self.stopping = False

    def observe(self, namespace: str, name: str, event: kopf.RawEvent) -> None:
        """Keep the event's body for the next round; wake the supervisor unless the event only
        echoes the operator's own last write (which would otherwise wake it again, forever)."""
        body: dict[str, Any] = dict(event.get("object") or {})
        memory = self.memories.setdefault((namespace, name), Memory())
        own = pacing.own_write((body.get("metadata") or {}).get("resourceVersion"), set(memory.own_versions))
        memory.saw(body, deleted=event.get("type") == "DELETED")
        if not own or memory.gone:
            self.wake(namespace, name)

    def wake(self, namespace: str, name: str) -> None:
        if self.stopping:
            return
        key = (namespace, name)
        if key not in self.tasks or self.tasks[key].done():
            self.wakeups[key] = asyncio.Event()
            self.tasks[key] = asyncio.create_task(
                self._supervise(namespace, name), name=f"vigil:{namespace}/{name}"
            )
        self.wakeups[key].set()

    async def _supervise(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        wakeup = self.wakeups[key]
        log = logging.LoggerAdapter(logger, {"object": f"{namespace}/{name}"})
        failures = 0
        try:
            while True:
                wakeup.clear()
                memory = self.memories.setdefault(key, Memory())
                self.in_round.add(key)
                try:
                    with metrics.RECONCILE_SECONDS.time():
                        delay = await reconcile_once(
                            namespace, name, self.config, log.logger, memory, self.cache, self.batcher
                        )
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures += 1
                    memory.forget()  # what a failed round left half-done is read afresh
                    delay = pacing.retry_delay(
                        failures, self.config.retry_base_seconds, self.config.retry_cap_seconds
                    )
                    log.exception(
                        "reconcile of %s/%s failed (%d in a row); retrying in %.1fs",
                        namespace,
                        name,
                        failures,
                        delay,
                    )
                finally:
                    self.in_round.discard(key)
                if self.stopping:
                    return
                if delay is None:  # the object is gone or going
                    metrics.forget_object(namespace, name)
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout=delay)
        finally:
            if self.tasks.get(key) is asyncio.current_task():
                del self.tasks[key]
                self.wakeups.pop(key, None)
                self.memories.pop(key, None)

    async def stop_all(self) -> None:
        """Stop every supervisor: idle ones at once, those in a round once it ends (up to
        DRAIN_SECONDS), so a clean handover never leaves a round half applied."""
        self.stopping = True
        for key, task in list(self.tasks.items()):
            if key not in self.in_round:
                task.cancel()
        busy = [task for key, task in self.tasks.items() if key in self.in_round]
        if busy:
            logger.info("letting %d round(s) in flight finish", len(busy))
            await asyncio.wait(busy, timeout=DRAIN_SECONDS)
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.batcher is not None:
            await self.batcher.close()


@kopf.index("apps", "v1", "deployments", id="owned_deployments", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY})
def owned_deployments(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """The owned Deployments by (namespace, name), as their label-filtered watch last saw them."""
    return {(namespace, name): kube.cached_view(body)}


@kopf.index("v1", "services", id="owned_services", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY})
def owned_services(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """The owned Services by (namespace, name), as their label-filtered watch last saw them."""
    return {(namespace, name): kube.cached_view(body)}


def apply_settings(settings: kopf.OperatorSettings, config: Config) -> None:
    """Kopf's settings: timeouts, server-side filtered watches, no peering (leader election is
    the guard against two active replicas)."""
    # Our own events carry values and queries; Kopf's log-to-event posting would only add noise.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = config.api_timeout_seconds
    # Filtered by the API server, not only by the handlers' `labels=` (which Kopf applies in the
    # client, after every Deployment and Service of the cluster has been streamed and parsed).
    settings.watching.label_selectors["apps", "v1", "deployments"] = OWNED
    settings.watching.label_selectors["v1", "services"] = OWNED
    # Kopf's peering would pause the watches but not our supervisors: a Lease (main.py) is the guard.
    settings.peering.standalone = True


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **indexes: Any) -> None:
    config: Config = memo.config
    apply_settings(settings, config)
    await kube.connect(timeout=config.api_timeout_seconds, max_in_flight=config.api_max_in_flight)
    memo.supervisors = Supervisors(
        config, kube.WatchCache(indexes["owned_deployments"], indexes["owned_services"])
    )


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    await memo.supervisors.stop_all()
    await prometheus.close()
    await kube.close()


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def model_deployment_changed(
    event: kopf.RawEvent, name: str, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Any change to a ModelDeployment (and the initial listing) wakes its supervisor, with the
    event's body: the round reads the object from it, not with a GET.

    A deleted one's supervisor wakes to find it gone, ends and forgets its metrics (again: a
    round in flight may have set some); no series of an object that no longer exists keeps its
    last value, nor an alert on it firing.
    """
    assert namespace is not None  # a namespaced kind: kopf passes None for cluster-scoped ones only
    if event.get("type") == "DELETED":
        metrics.forget_object(namespace, name)
    memo.supervisors.observe(namespace, name, event)


@kopf.on.event("apps", "v1", "deployments", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY})
async def deployment_changed(labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Rollout progress (or an edit) of an owned Deployment wakes its ModelDeployment's supervisor."""
    owner = labels.get(c.LABEL_MODEL)
    if owner and (namespace, owner) in memo.supervisors.tasks:
        memo.supervisors.wake(namespace, owner)
