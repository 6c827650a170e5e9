"""Models trained for the model server's unit tests."""

from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from harness.models import iris as iris_dataset


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray, np.ndarray]:
    return iris_dataset()


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
