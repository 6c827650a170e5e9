"""SIGTERM: stop accepting connections, finish the request in flight, exit 0."""

import json
import signal
import socket
from pathlib import Path

from model_server_harness import MODEL_NAME, pinned, start_server

from harness.processes import ProcessGroup
from harness.waiting import wait_for


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def read_until(connection: socket.socket, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(
    processes: ProcessGroup, iris_model_file: Path
) -> None:
    server = start_server(processes, str(iris_model_file), *pinned(iris_model_file)).wait_ready()
    body = json.dumps({"instances": [[6.9, 3.1, 5.4, 2.1]]}).encode()
    head = (
        f"POST /v1/models/{MODEL_NAME}:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    )

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(head.encode())
        # "100 Continue" comes once the handler reads the body: the request is now in flight.
        assert read_until(connection, b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue")
        server.process.signal(signal.SIGTERM)
        wait_for(lambda: refuses_connections(server.port), timeout=30, what="the listener to close")
        assert server.process.alive()
        connection.sendall(body)
        response = read_until(connection, b"\x00never\x00")  # the server closes the connection after it

    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK"
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["predictions"] == [2]
    wait_for(lambda: not server.process.alive(), timeout=30, what="the server to exit")
    assert server.process.popen.returncode == 0
