"""The real node's host check names what is missing and the fix, in one line each."""

from __future__ import annotations

import contextlib
import socket

from harness.node import PORTS, host_problems


def test_a_taken_kubelet_port_is_named_with_the_fix() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):  # already taken (a real node runs): taken either way
            holder.bind(("0.0.0.0", PORTS["kubelet"]))
            holder.listen()
        problems = host_problems()
    (problem,) = [p for p in problems if "port" in p]
    assert f"kubelet port {PORTS['kubelet']}" in problem
    assert "make node-down" in problem
    assert all("\n" not in p for p in problems)
