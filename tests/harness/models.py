"""Models trained in the test: a good iris classifier and a degraded one, as joblib files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


@dataclass(frozen=True)
class TrainedModel:
    path: Path
    sha256: str

    @property
    def uri(self) -> str:
        return self.path.as_uri()


def iris() -> tuple[np.ndarray, np.ndarray]:
    data = load_iris()
    return data.data, data.target


def train(path: Path, *, shuffled_fraction: float = 0.0, seed: int = 0) -> TrainedModel:
    """Fit LogisticRegression on iris; shuffling a fraction of the labels degrades it."""
    features, labels = iris()
    labels = labels.copy()
    if shuffled_fraction:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(labels), size=int(len(labels) * shuffled_fraction), replace=False)
        labels[chosen] = (labels[chosen] + 1 + rng.integers(0, 2, size=len(chosen))) % 3
    model = LogisticRegression(max_iter=1000).fit(features, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path)
    return TrainedModel(path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def accuracy(model: TrainedModel) -> float:
    features, labels = iris()
    return float((joblib.load(model.path).predict(features) == labels).mean())
