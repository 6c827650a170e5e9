"""Fixtures for the model server's integration tests: a model trained here, and running servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from model_server_harness import ModelServer, pinned, start_server
from sklearn.linear_model import LogisticRegression

from harness.models import iris as iris_dataset
from harness.processes import ProcessGroup


@pytest.fixture(scope="session")
def iris_data() -> tuple[np.ndarray, np.ndarray]:
    return iris_dataset()


@pytest.fixture(scope="session")
def iris_classifier(iris_data: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(*iris_data)


@pytest.fixture(scope="session")
def iris_model_file(tmp_path_factory: pytest.TempPathFactory, iris_classifier: LogisticRegression) -> Path:
    """The iris LogisticRegression saved with joblib, as a training job would leave it."""
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    joblib.dump(iris_classifier, path)
    return path


@pytest.fixture(scope="module")
def module_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    """Processes shared by the tests of one module, stopped after the last of them."""
    group = ProcessGroup(log_dir=tmp_path_factory.mktemp("logs"))
    yield group
    group.close()


@pytest.fixture(autouse=True)
def _attach_module_logs(request: pytest.FixtureRequest) -> None:
    """A failing test's report gets the logs of its module's servers too (see tests/conftest.py)."""
    if "module_processes" in request.fixturenames:
        group = request.getfixturevalue("module_processes")
        request.node.vigil_process_groups = [*getattr(request.node, "vigil_process_groups", []), group]


@pytest.fixture(scope="module")
def iris_server(module_processes: ProcessGroup, iris_model_file: Path) -> ModelServer:
    """A ready server for the iris model, shared by the tests of a module (so counters add up)."""
    return start_server(module_processes, str(iris_model_file), *pinned(iris_model_file)).wait_ready()
