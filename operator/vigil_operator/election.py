"""Leader election's shell: reads and writes the Lease, asks `leader.decide` what to do.

`main` runs Kopf only while this replica leads: it waits in `acquire()`, starts Kopf, and
when `keep_leading()` returns (no renewal within the renew deadline, or another holder) the
process exits at once, so nothing of the old leader acts after that moment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
from kubernetes_asyncio import client

from vigil_operator import constants as c
from vigil_operator import kube, metrics
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
    step_down_in,
)

logger = logging.getLogger("vigil.leader")
# Errors worth a retry: the API server refused or failed, the connection broke, a call timed out.
TRANSIENT = (kube.ApiException, aiohttp.ClientError, TimeoutError)


def own_identity(environ: dict[str, str] | None = None) -> str:
    """The pod's name and uid (the chart passes both): a container restarted in the same pod is
    the same candidate and takes its Lease back at once (its previous process is gone by then).
    Elsewhere the host name and a random id: every process is a candidate of its own."""
    env = os.environ if environ is None else environ
    if env.get("POD_NAME") and env.get("POD_UID"):
        return f"{env['POD_NAME']}_{env['POD_UID']}"
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class Elector:
    """One candidate for one Lease."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.identity, self.timing, self.clock = identity, timing, clock
        self.observed: Observed | None = None
        self.renewed_at: float | None = None  # when our last successful write was sent; None: not leading

    @property
    def leading(self) -> bool:
        return self.renewed_at is not None

    async def acquire(self) -> None:
        """Return once this candidate holds the Lease."""
        while True:
            decision = await self._round()
            if self.leading:
                record = self.observed.record if self.observed else None
                logger.info(
                    "leading as %s (Lease %s/%s, %s transitions) at %.3f",
                    self.identity,
                    self.namespace,
                    self.name,
                    record.transitions if record else 0,
                    time.time(),  # the log has no timestamps; tests order handovers by this
                )
                metrics.LEADER.set(1)
                return
            await asyncio.sleep(next_wait(decision, None, self.clock(), self.timing))

    async def keep_leading(self) -> None:
        """Renew every retry period; return when this replica must stop acting."""
        while True:
            assert self.renewed_at is not None
            renewing = Decision(Step.RENEW, None, self.timing.retry_period)
            await asyncio.sleep(next_wait(renewing, self.renewed_at, self.clock(), self.timing))
            decision = await self._round()
            if decision.step is Step.STEP_DOWN:
                holder = self.observed.record.holder if self.observed else "nobody (the Lease is gone)"
                logger.critical(
                    "stepping down: %s",
                    "no renewal within the renew deadline"
                    if step_down_in(self.renewed_at, self.clock(), self.timing) <= 0
                    else f"the Lease is held by {holder or 'nobody'}",
                )
                self.renewed_at = None
                metrics.LEADER.set(0)
                return

    async def release(self) -> None:
        """Hand the Lease over at once (clean shutdown, after every supervisor stopped)."""
        if not self.leading or self.observed is None:
            return
        self.renewed_at = None
        metrics.LEADER.set(0)
        record = released(self.observed.record, datetime.now(UTC))
        try:
            await self._write(record, self.observed.version, self.timing.renew_deadline)
        except TRANSIENT as error:
            logger.warning("could not release the Lease (the next leader waits for it to expire): %s", error)
            return
        logger.info("released the Lease %s/%s", self.namespace, self.name)

    async def _round(self) -> Decision:
        """Read the Lease, decide, write what the decision says; transient errors wait a retry."""
        timeout = self._call_timeout()
        try:
            found = await asyncio.wait_for(
                kube.read_lease(self.api, self.namespace, self.name, timeout), timeout
            )
        except TRANSIENT as error:
            logger.warning("cannot read the Lease %s/%s: %s", self.namespace, self.name, _short(error))
            return self._decide()  # on what we saw before: a leader still steps down in time
        now = self.clock()  # after the answer: the record was written before this moment
        if found is None:
            self.observed = None
        else:
            spec, version = found
            previous = self.observed
            self.observed = observe(previous, record_from_spec(spec), version, now)
            if not self.leading and self.observed is not previous and self.observed.record.holder:
                logger.debug("the Lease is held by %s", self.observed.record.holder)
        decision = self._decide()
        if decision.write is None:
            return decision
        sent = self.clock()
        try:
            version = await self._write(
                decision.write, self.observed.version if self.observed else None, self._call_timeout()
            )
        except TRANSIENT as error:
            level = logging.DEBUG if kube.is_conflict(error) else logging.WARNING
            logger.log(level, "cannot %s the Lease: %s", decision.step, _short(error))
            return decision
        if self.renewed_at is not None and step_down_in(self.renewed_at, self.clock(), self.timing) <= 0:
            return decision  # too late to count: the next round steps down
        self.renewed_at = sent
        self.observed = Observed(decision.write, version, self.clock())
        return decision

    def _decide(self) -> Decision:
        return decide(
            self.observed,
            identity=self.identity,
            now=self.clock(),
            wall=datetime.now(UTC),
            timing=self.timing,
            renewed_at=self.renewed_at,
        )

    def _call_timeout(self) -> float:
        """A leader's call may not outlast its step-down deadline; a standby's, a renew deadline."""
        if self.renewed_at is None:
            return self.timing.renew_deadline
        return max(0.1, step_down_in(self.renewed_at, self.clock(), self.timing))

    async def _write(self, record: LeaseRecord, version: str | None, timeout: float) -> str:
        return await asyncio.wait_for(
            kube.write_lease(
                self.api,
                self.namespace,
                self.name,
                spec_of(record),
                version,
                labels={c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_COMPONENT: "leader-election"},
                timeout=timeout,
            ),
            timeout,
        )


def _short(error: BaseException) -> str:
    if isinstance(error, kube.ApiException):
        return f"HTTP {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"
