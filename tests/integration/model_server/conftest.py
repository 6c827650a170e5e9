"""Fixtures for the model server's integration tests: a model trained here, and running servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from model_server_harness import ModelServer, start_server
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from harness.processes import ProcessGroup


@pytest.fixture(scope="session")
def iris_data() -> tuple[np.ndarray, np.ndarray]:
    features, labels = load_iris(return_X_y=True)
    return features, labels


@pytest.fixture(scope="session")
def iris_classifier(iris_data: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(*iris_data)


@pytest.fixture(scope="session")
def iris_model_file(tmp_path_factory: pytest.TempPathFactory, iris_classifier: LogisticRegression) -> Path:
    """The iris LogisticRegression saved with joblib, as a training job would leave it."""
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    joblib.dump(iris_classifier, path)
    return path


def _group(log_dir: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(log_dir=log_dir)
    try:
        yield group
    finally:
        group.close()
        # Teardown output is shown only when the test failed: the servers' logs, for the reader.
        for name, log in group.logs().items():
            print(f"----- {name} -----\n{log}")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Processes started for one test, stopped at its end."""
    yield from _group(tmp_path / "logs")


@pytest.fixture(scope="module")
def module_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    """Processes shared by the tests of one module, stopped after the last of them."""
    yield from _group(tmp_path_factory.mktemp("logs"))


@pytest.fixture(scope="module")
def iris_server(module_processes: ProcessGroup, iris_model_file: Path) -> ModelServer:
    """A ready server for the iris model, shared by the tests of a module (so counters add up)."""
    return start_server(module_processes, str(iris_model_file)).wait_ready()
