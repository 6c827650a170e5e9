"""Kopf wiring: one supervisor task per ModelDeployment, woken by events or by its own timer.

Handlers only start, wake and stop supervisors; every round is `reconcile.reconcile_once`.
Plain event handlers (no daemons, no change handlers) mean Kopf adds no finalizers and
writes nothing to the objects: deleting a ModelDeployment never waits for the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf
import prometheus_client

from vigil_operator import constants as c
from vigil_operator import kube, metrics, prometheus
from vigil_operator.batcher import Batcher
from vigil_operator.config import Config
from vigil_operator.reconcile import reconcile_once

ERROR_RETRY_SECONDS = 5.0
logger = logging.getLogger("vigil")


class Supervisors:
    """The running supervisor of each ModelDeployment, and the event that wakes it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # One query per tick per Prometheus for the built-in checks (None: one query per check).
        self.batcher = (
            Batcher(window=config.batch_window, concurrency=config.prometheus_concurrency)
            if config.batch_window > 0
            else None
        )
        self.tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.wakeups: dict[tuple[str, str], asyncio.Event] = {}

    def wake(self, namespace: str, name: str) -> None:
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
        try:
            while True:
                wakeup.clear()
                try:
                    with metrics.RECONCILE_SECONDS.time():
                        delay = await reconcile_once(namespace, name, self.config, log.logger, self.batcher)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception(
                        "reconcile of %s/%s failed; retrying in %ss", namespace, name, ERROR_RETRY_SECONDS
                    )
                    delay = ERROR_RETRY_SECONDS
                if delay is None:  # the object is gone or going
                    metrics.forget_object(namespace, name)
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout=delay)
        finally:
            if self.tasks.get(key) is asyncio.current_task():
                del self.tasks[key]
                self.wakeups.pop(key, None)

    async def stop_all(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        if self.batcher is not None:
            await self.batcher.close()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: Config = memo.config
    # Our own events carry values and queries; Kopf's log-to-event posting would only add noise.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    if config.peering:
        settings.peering.name = config.peering
        settings.peering.mandatory = True
    else:
        settings.peering.standalone = True
    if config.metrics_port:
        prometheus_client.start_http_server(config.metrics_port)
    await kube.connect()
    memo.supervisors = Supervisors(config)


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    await memo.supervisors.stop_all()
    await prometheus.close()
    await kube.close()


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def model_deployment_changed(
    event: kopf.RawEvent, name: str, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Any change to a ModelDeployment (and the initial listing) wakes its supervisor.

    A deleted one's supervisor wakes to find it gone, ends and forgets its metrics (again: a
    round in flight may have set some); no series of an object that no longer exists keeps its
    last value, nor an alert on it firing.
    """
    assert namespace is not None  # a namespaced kind: kopf passes None for cluster-scoped ones only
    if event.get("type") == "DELETED":
        metrics.forget_object(namespace, name)
    memo.supervisors.wake(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY})
async def deployment_changed(labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Rollout progress of an owned Deployment wakes its ModelDeployment's supervisor."""
    owner = labels.get(c.LABEL_MODEL)
    if owner and (namespace, owner) in memo.supervisors.tasks:
        memo.supervisors.wake(namespace, owner)
