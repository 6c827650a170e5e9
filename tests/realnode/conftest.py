"""The real-node tier: Vigil installed from its chart, its pods in containers on a real kubelet.

Its scenario (scenario.py) starts with the session, beside the other tiers (tests/conftest.py);
these tests run last and assert what it recorded. It needs root and `make node-tools images`;
without them every test of the tier fails with the missing prerequisite named.
"""

from __future__ import annotations

import pytest

from .scenario import RealNodeRun


@pytest.fixture
def real_node(request: pytest.FixtureRequest) -> RealNodeRun:
    run = request.getfixturevalue("real_node_run")
    assert run is not None, "the real-node scenario was not started (tests/conftest.py)"
    return run
