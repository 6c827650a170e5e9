"""Models trained for the model server's unit tests."""

from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray, np.ndarray]:
    features, labels = load_iris(return_X_y=True)
    return features, labels


@pytest.fixture(scope="session")
def classifier(iris: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(*iris)


@pytest.fixture(scope="session")
def regressor(iris: tuple[np.ndarray, np.ndarray]) -> LinearRegression:
    features, labels = iris
    return LinearRegression().fit(features, labels.astype(float))


@pytest.fixture
def model_file(tmp_path: Path, classifier: LogisticRegression) -> Path:
    path = tmp_path / "model.joblib"
    joblib.dump(classifier, path)
    return path
