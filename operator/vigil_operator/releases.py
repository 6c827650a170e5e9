"""A release is what one version of a model server needs to run; the spec, in typed form."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vigil_operator.analysis import Criteria, WatchParams

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus/Go style duration such as "30s", "5m" or "1h30m"."""
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use forms like 30s, 5m, 1h30m)")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def format_duration(seconds: float) -> str:
    """A PromQL range for `seconds`, rounded up to whole seconds."""
    return f"{max(1, int(-(-seconds // 1)))}s"


@dataclass(frozen=True)
class Release:
    """Everything that identifies one running version: a change to any field is a rollout."""

    version: str
    uri: str
    image: str
    sha256: str | None = None

    def to_dict(self) -> dict[str, str]:
        data = {"version": self.version, "uri": self.uri, "image": self.image}
        if self.sha256:
            data["sha256"] = self.sha256
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Release | None:
        if not data or not data.get("version"):
            return None
        return cls(
            version=str(data["version"]),
            uri=str(data.get("uri", "")),
            image=str(data.get("image", "")),
            sha256=data.get("sha256") or None,
        )


@dataclass(frozen=True)
class AnalysisSpec:
    """`spec.analysis`, with defaults already applied (the CRD applies the same ones)."""

    prometheus_url: str
    credentials_secret: str | None = None
    query: str | None = None
    threshold: float = 0.9
    interval: float = 30.0
    window: float = 300.0
    min_samples: int = 100
    failure_limit: int = 3
    success_limit: int = 3
    after_promotion: bool = True
    error_limit: int = 5
    confidence: float = 0.95
    drop: float = 0.05
    query_timeout: float = 10.0
    evaluation_delay: float = 30.0

    @property
    def builtin(self) -> bool:
        return not self.query

    @property
    def criteria(self) -> Criteria:
        """How one check is judged before promotion (and every check of a custom query)."""
        return Criteria(
            threshold=self.threshold,
            min_samples=self.min_samples,
            confidence=self.confidence,
            builtin=self.builtin,
        )

    @property
    def watch_params(self) -> WatchParams:
        """How the built-in metric watches a promoted version."""
        return WatchParams(threshold=self.threshold, drop=self.drop)


@dataclass(frozen=True)
class ModelDeploymentSpec:
    """The typed spec of one ModelDeployment."""

    release: Release
    analysis: AnalysisSpec
    replicas: int | None = None  # None: the operator never writes replicas (an HPA may own them)
    progress_deadline_seconds: int = 600
    resources: dict[str, Any] = field(default_factory=dict)
    pod_labels: dict[str, str] = field(default_factory=dict)
    pod_annotations: dict[str, str] = field(default_factory=dict)
    # The server may load a joblib/pickle file without spec.model.sha256 (loading runs its code).
    allow_unpinned_pickle: bool = False


_T = TypeVar("_T")


class InvalidSpec(ValueError):
    """The spec cannot be acted on; the message names the field."""


def parse_spec(
    spec: dict[str, Any], *, default_image: str, default_prometheus_url: str
) -> ModelDeploymentSpec:
    """Typed spec from the object's `spec`; operator defaults fill the optional fields."""
    model = _required(spec, "spec", "model")
    analysis = spec.get("analysis") or {}
    if not isinstance(model, dict) or not isinstance(analysis, dict):
        raise InvalidSpec("spec.model and spec.analysis must be objects")
    release = Release(
        version=str(_required(spec, "spec", "version")),
        uri=str(_required(model, "spec.model", "uri")),
        image=str(spec.get("image") or default_image),
        sha256=model.get("sha256") or None,
    )

    def setting(key: str, convert: Callable[[Any], _T], default: Any) -> _T:
        return _converted(f"spec.analysis.{key}", convert, analysis.get(key, default))

    analysis_spec = AnalysisSpec(
        prometheus_url=str(analysis.get("prometheusUrl") or default_prometheus_url),
        credentials_secret=analysis.get("credentialsSecret") or None,
        query=analysis.get("query") or None,
        threshold=setting("threshold", float, 0.9),
        interval=setting("interval", _duration, "30s"),
        window=setting("window", _duration, "5m"),
        min_samples=setting("minSamples", int, 100),
        failure_limit=setting("failureLimit", int, 3),
        success_limit=setting("successLimit", int, 3),
        after_promotion=bool(analysis.get("afterPromotion", True)),
        error_limit=setting("errorLimit", int, 5),
        confidence=setting("confidence", float, 0.95),
        drop=setting("drop", float, 0.05),
        evaluation_delay=setting("evaluationDelay", _duration, "30s"),
        query_timeout=setting("queryTimeout", _duration, "10s"),
    )
    if not analysis_spec.prometheus_url:
        raise InvalidSpec(
            "spec.analysis.prometheusUrl is empty and the operator has no default Prometheus URL"
        )
    return ModelDeploymentSpec(
        release=release,
        analysis=analysis_spec,
        replicas=None if spec.get("replicas") is None else _converted("spec.replicas", int, spec["replicas"]),
        progress_deadline_seconds=_converted(
            "spec.progressDeadlineSeconds", int, spec.get("progressDeadlineSeconds", 600)
        ),
        resources=dict(spec.get("resources") or {}),
        pod_labels=dict(spec.get("podLabels") or {}),
        pod_annotations=dict(spec.get("podAnnotations") or {}),
        allow_unpinned_pickle=model.get("allowUnpinnedPickle") is True,
    )


def _required(data: dict[str, Any], path: str, key: str) -> Any:
    value = data.get(key)
    if value is None or value == "":
        raise InvalidSpec(f"{path}.{key} is required")
    return value


def _converted(path: str, convert: Callable[[Any], _T], value: Any) -> _T:
    """`value` in its type, or InvalidSpec naming the field it came from."""
    try:
        return convert(value)
    except (TypeError, ValueError) as error:
        raise InvalidSpec(f"{path}: {error}") from None


def _duration(value: Any) -> float:
    return parse_duration(str(value))
