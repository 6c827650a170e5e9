"""How often the operator talks to the API server: retries, status writes, re-reads. Pure.

At a thousand objects, what each round costs is multiplied: a failing round retried every few
seconds without spread makes a thundering herd, and a status write per check (a new
`lastCheck.time`) makes a PATCH, and a watch event to every watcher, per object per interval.
These rules keep the cost of a quiet object near zero; docs/operations.md describes them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from vigil_operator import constants as c

# What a reader of the status acts on: the phase, the releases, the conditions' verdicts, the
# streaks towards promotion or rollback, the last verdict. A change of any of them is written at
# once; the rest (the last check's numbers and time, the CUSUM state, the messages that quote
# them) rides along with that write, or with the heartbeat.
SIGNIFICANT_FIELDS = (
    "observedGeneration",
    "phase",
    "currentVersion",
    "stableVersion",
    "failedVersion",
    "currentRelease",
    "stableRelease",
    "rolloutStartedAt",
    "servingSince",
    "rollbackReason",
    "degradedReason",
    "retries",
    "applyError",
    "refusedSpecHashes",
    "strategy",
    "history",
)
PROMOTED = "Promoted"


def significant(status: dict[str, Any]) -> dict[str, Any]:
    """The part of a status whose change must be written at once (see `SIGNIFICANT_FIELDS`).

    After promotion the pass streak grows with every check and decides nothing, so only
    failures and errors count there; before it, passes are the way to promotion.
    """
    streaks = dict(status.get("streaks") or {})
    if status.get("phase") == PROMOTED:
        streaks.pop("passes", None)
    return {
        **{key: status.get(key) for key in SIGNIFICANT_FIELDS},
        "streaks": streaks,
        "verdict": (status.get("lastCheck") or {}).get("verdict"),
        "conditions": [
            (item.get("type"), item.get("status"), item.get("reason"))
            for item in status.get("conditions") or []
        ],
    }


def status_write_due(
    stored: dict[str, Any], wanted: dict[str, Any], now: datetime, heartbeat_seconds: float
) -> bool:
    """Whether to write `wanted` over the `stored` status now.

    At once when a significant part changed; otherwise (only a check's numbers and time) when
    the stored `lastCheck.time` is `heartbeat_seconds` old, so status never shows a check older
    than that while checks run. Never when nothing changed.
    """
    if stored == wanted:
        return False
    if significant(stored) != significant(wanted):
        return True
    last = (stored.get("lastCheck") or {}).get("time")
    if not last:
        return True
    written = datetime.fromisoformat(str(last).replace("Z", "+00:00"))
    return now - written >= timedelta(seconds=heartbeat_seconds)


def retry_delay(
    failures: int, base_seconds: float, cap_seconds: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before retrying after `failures` failed rounds in a row (1 for the first).

    Exponential (base x 2^(failures-1)) up to the cap, with "equal jitter": half of the step is
    fixed, the other half random, so objects that failed together (an API server restart) spread
    out instead of retrying in step, and no retry comes sooner than half its step.
    """
    exponent = min(max(failures, 1) - 1, 32)  # 2^32 x any sane base is far past any cap
    step = min(cap_seconds, base_seconds * (1 << exponent))
    return step / 2 + step / 2 * rand()


def secret_check_due(
    last: tuple[str | None, datetime] | None, rotation: str | None, now: datetime, every_seconds: float
) -> bool:
    """Whether to read the feedback token Secret again: never read, a new rotation value, or
    `every_seconds` since the last read (someone may have deleted it)."""
    if last is None:
        return True
    handled_rotation, at = last
    return rotation != handled_rotation or now - at >= timedelta(seconds=every_seconds)


def own_write(resource_version: str | None, own_versions: set[str] | frozenset[str]) -> bool:
    """Whether a watch event shows the object as the operator's own last write left it.

    Such an event tells the supervisor nothing new (it holds the written object already), so it
    must not wake it for another round: that would be a second round per write, forever.
    """
    return resource_version is not None and resource_version in own_versions


def supersedes(seen: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """Whether `new` (a watch event's object) makes a round working from `seen` moot: a spec
    change (a new generation), a new or changed action annotation, a deletion.

    A round waiting for its check (a batch window, a slow Prometheus) would otherwise hold a
    user's change back until the check answered; status writes and label changes do not count.
    """
    if seen is None or new is None:
        return new is not seen
    old_meta, new_meta = seen.get("metadata") or {}, new.get("metadata") or {}
    return (
        old_meta.get("generation") != new_meta.get("generation")
        or (old_meta.get("annotations") or {}).get(c.ANNOTATION_ACTION)
        != (new_meta.get("annotations") or {}).get(c.ANNOTATION_ACTION)
        or (new_meta.get("deletionTimestamp") is not None and old_meta.get("deletionTimestamp") is None)
    )


def spec_unapplied(body: dict[str, Any]) -> bool:
    """Whether the object's spec changed since the operator last wrote its status.

    Such a round applies the change and makes no check: the check would judge what the change
    may replace, and with batching it would come after its tick's query had left (the round
    that saw the change first dropped its check, `supersedes`), a query of its own. It comes on
    the next tick instead.
    """
    generation = (body.get("metadata") or {}).get("generation")
    observed = (body.get("status") or {}).get("observedGeneration")
    return observed is not None and generation != observed
