"""A release is what one version of a model server needs to run; the spec, in typed form."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vigil_operator.analysis import ComparisonCriteria, Criteria, WatchParams
from vigil_operator.pod_template import InvalidPodTemplate, PodTemplate, parse_pod_template

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

    def comparison_criteria(self, margin: float) -> ComparisonCriteria:
        """How a shadow candidate is compared with the stable release (same evidence bar as the gate)."""
        return ComparisonCriteria(margin=margin, min_samples=self.min_samples, confidence=self.confidence)


class StrategyType(enum.StrEnum):
    """How a candidate reaches requests: `spec.strategy.type`."""

    REPLACE = "Replace"  # the candidate takes every request while it is analysed (the default)
    CANARY = "Canary"  # a share of the replicas runs the candidate, raised step by step
    SHADOW = "Shadow"  # the candidate gets mirrored copies and never answers a user


DEFAULT_CANARY_STEPS = (10,)
DEFAULT_SHADOW_MARGIN = 0.01
MAX_CANARY_STEPS = 10
MAX_SHADOW_MARGIN = 0.2


@dataclass(frozen=True)
class StrategySpec:
    """`spec.strategy`, with defaults applied (the CRD applies the same ones)."""

    type: StrategyType = StrategyType.REPLACE
    # Canary (and a Shadow followed by Canary): the candidate's share of replicas at each step, in
    # percent, strictly increasing; after the last step passes, the candidate takes every replica.
    canary_steps: tuple[int, ...] = DEFAULT_CANARY_STEPS
    # Shadow: how far below the stable release's accuracy (on the same labelled ids) is acceptable.
    shadow_margin: float = DEFAULT_SHADOW_MARGIN
    # Shadow: what follows a passed shadow, Replace (every replica) or Canary (the canary steps).
    after_shadow: StrategyType = StrategyType.REPLACE


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
    strategy: StrategySpec = field(default_factory=StrategySpec)
    # Not part of the release: a change rolls the pods of whatever release serves, unjudged.
    pod_template: PodTemplate = field(default_factory=PodTemplate)


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
        strategy=parse_strategy(spec.get("strategy")),
        pod_template=_pod_template(spec.get("podTemplate")),
    )


def _pod_template(raw: Any) -> PodTemplate:
    try:
        return parse_pod_template(raw)
    except InvalidPodTemplate as error:
        raise InvalidSpec(str(error)) from None


def parse_strategy(strategy: Any) -> StrategySpec:
    """Typed `spec.strategy`; InvalidSpec names the field when the CRD's rules were bypassed."""
    if strategy is None:
        return StrategySpec()
    if not isinstance(strategy, dict):
        raise InvalidSpec("spec.strategy must be an object")
    kind = _strategy_type("spec.strategy.type", strategy.get("type", StrategyType.REPLACE))
    canary, shadow = strategy.get("canary"), strategy.get("shadow")
    for key, value in (("canary", canary), ("shadow", shadow)):
        if value is not None and not isinstance(value, dict):
            raise InvalidSpec(f"spec.strategy.{key} must be an object")
    canary, shadow = canary or {}, shadow or {}
    after_shadow = _strategy_type("spec.strategy.shadow.next", shadow.get("next", StrategyType.REPLACE))
    if after_shadow is StrategyType.SHADOW:
        raise InvalidSpec("spec.strategy.shadow.next must be Replace or Canary")
    uses_canary = kind is StrategyType.CANARY or (
        kind is StrategyType.SHADOW and after_shadow is StrategyType.CANARY
    )
    if strategy.get("canary") is not None and not uses_canary:
        raise InvalidSpec(
            "spec.strategy.canary is set but unused: "
            "it needs type Canary, or type Shadow with shadow.next Canary"
        )
    if strategy.get("shadow") is not None and kind is not StrategyType.SHADOW:
        raise InvalidSpec("spec.strategy.shadow is set but unused: it needs type Shadow")
    return StrategySpec(
        type=kind,
        canary_steps=_canary_steps(canary.get("steps")),
        shadow_margin=_shadow_margin(shadow.get("margin", DEFAULT_SHADOW_MARGIN)),
        after_shadow=after_shadow,
    )


def _strategy_type(path: str, value: Any) -> StrategyType:
    try:
        return StrategyType(value)
    except ValueError:
        allowed = ", ".join(kind.value for kind in StrategyType)
        raise InvalidSpec(f"{path}: unknown strategy {value!r} (one of {allowed})") from None


def _canary_steps(steps: Any) -> tuple[int, ...]:
    """Shares of replicas in percent, strictly increasing, each in [1, 99]."""
    if steps is None:
        return DEFAULT_CANARY_STEPS
    path = "spec.strategy.canary.steps"
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_CANARY_STEPS:
        raise InvalidSpec(f"{path} must be a list of 1 to {MAX_CANARY_STEPS} steps")
    shares: list[int] = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or "percent" not in step:
            raise InvalidSpec(f"{path}[{index}] must be an object with percent")
        share = step["percent"]
        if isinstance(share, bool) or not isinstance(share, int) or not 1 <= share <= 99:
            raise InvalidSpec(f"{path}[{index}].percent must be a whole number from 1 to 99, got {share!r}")
        if shares and share <= shares[-1]:
            raise InvalidSpec(f"{path}[{index}].percent must be more than the step before ({shares[-1]})")
        shares.append(share)
    return tuple(shares)


def _shadow_margin(value: Any) -> float:
    margin = _converted("spec.strategy.shadow.margin", float, value)
    if not 0.0 <= margin <= MAX_SHADOW_MARGIN:
        raise InvalidSpec(
            f"spec.strategy.shadow.margin must be from 0 to {MAX_SHADOW_MARGIN:g}, got {margin:g}"
        )
    return margin


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
