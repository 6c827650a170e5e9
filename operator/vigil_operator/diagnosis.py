"""Why the built-in query found no series, decided from what Prometheus says about the pods. Pure.

An empty answer has several causes that need different fixes, and the most common one (nothing
scrapes the pods: a PodMonitor without the label the Prometheus selects monitors by) looks
nothing like the one the old message blamed (a missing `namespace` label). So when the built-in
query returns nothing, the Prometheus adapter asks one more query (`queries.no_series_query`),
and `diagnose` turns its counts into the cause and its fix.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vigil_operator.queries import Target

# Every message starts like the one before causes were told apart, so what people grep for, and
# docs/troubleshooting.md's table, still match.
PREFIX = "no feedback series for this version"


class NoSeriesCause(enum.StrEnum):
    """Why no series matched, most fundamental first (the order `diagnose` checks them in)."""

    NO_NAMESPACE_LABEL = "NoNamespaceLabel"  # the series exist, scraped without a `namespace` label
    NO_TARGET = "NoTarget"  # Prometheus scrapes none of the object's pods
    TARGETS_DOWN = "TargetsDown"  # it tries, and every scrape fails
    NO_LABELS_YET = "NoLabelsYet"  # scraped and up, but this version's counters are not there yet


@dataclass(frozen=True)
class SeriesEvidence:
    """What Prometheus holds about one object's pods, at the check's time."""

    targets_up: int  # `up == 1` series of the object's pods (namespace and pod name)
    targets_down: int  # `up == 0` series of them
    unlabelled_series: int  # feedback series of this model and version without a `namespace` label


@dataclass(frozen=True)
class Diagnosis:
    cause: NoSeriesCause
    message: str  # what is wrong and the fix, for the check's reason, the events and status


def diagnose(target: Target, evidence: SeriesEvidence) -> Diagnosis:
    """The likely cause of an empty built-in answer, and what to do about it."""
    pods = f"{target.namespace}/{target.name}"
    if evidence.unlabelled_series > 0:
        return Diagnosis(
            NoSeriesCause.NO_NAMESPACE_LABEL,
            f"{PREFIX}: Prometheus has {_count(evidence.unlabelled_series, 'series')} of this model and "
            f'version without a namespace label, so namespace="{target.namespace}" matches none: '
            "relabel __meta_kubernetes_namespace to namespace in the scrape job (the chart's PodMonitor "
            "and manifests/samples/prometheus-scrape-config.yaml do)",
        )
    if evidence.targets_up == 0 and evidence.targets_down == 0:
        return Diagnosis(
            NoSeriesCause.NO_TARGET,
            f"{PREFIX}: Prometheus scrapes no pod of {pods} (no up series with that namespace and pod "
            "name): turn the chart's PodMonitor on (modelServers.podMonitor.enabled=true) with the label "
            "your Prometheus selects monitors by (kube-prometheus-stack: release=<its release name>), or "
            "add the job of manifests/samples/prometheus-scrape-config.yaml",
        )
    if evidence.targets_up == 0:
        return Diagnosis(
            NoSeriesCause.TARGETS_DOWN,
            f"{PREFIX}: Prometheus has {_count(evidence.targets_down, 'target')} for the pods of "
            f"{pods} and every scrape fails (up == 0): check that the pods are Ready and that "
            "Prometheus reaches their port http (8080) /metrics (a NetworkPolicy? a mesh requiring "
            "mTLS?); its Targets page shows the error",
        )
    up = _count(evidence.targets_up, "target")
    return Diagnosis(
        NoSeriesCause.NO_LABELS_YET,
        f"{PREFIX}: Prometheus scrapes the pods of {pods} ({up} up) but has no feedback counters "
        "of this version yet: no labelled predictions yet, or its pods were first scraped after the "
        "check's time (then the next check sees them); send ground truth to "
        f"POST /v2/models/{target.name}/feedback",
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 or noun.endswith("s") else f"{number} {noun}s"
