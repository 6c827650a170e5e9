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


def request_on(connection: socket.socket, port: int) -> bytes:
    """Send one predict request on an open connection and read its whole response."""
    body = json.dumps({"instances": [[6.9, 3.1, 5.4, 2.1]]}).encode()
    connection.sendall(
        f"POST /v1/models/{MODEL_NAME}:predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    head = read_until(connection, b"\r\n\r\n")
    headers, _, received = head.partition(b"\r\n\r\n")
    length = int(
        next(line for line in headers.split(b"\r\n") if line.lower().startswith(b"content-length:")).split(
            b":"
        )[1]
    )
    while len(received) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += chunk
    return headers + b"\r\n\r\n" + received


def test_after_sigterm_a_keep_alive_connection_gets_its_next_answer_with_connection_close(
    processes: ProcessGroup, iris_model_file: Path
) -> None:
    """A client behind a Service may write its next request on a kept-alive connection just as the
    pod stops: it gets an answer that closes the connection, never a connection closed unanswered."""
    server = start_server(processes, str(iris_model_file), *pinned(iris_model_file)).wait_ready()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        first = request_on(connection, server.port)
        assert first.startswith(b"HTTP/1.1 200 OK")
        assert b"connection: close" not in first.lower()
        server.process.signal(signal.SIGTERM)
        wait_for(lambda: refuses_connections(server.port), timeout=30, what="the listener to close")

        second = request_on(connection, server.port)
        assert second.startswith(b"HTTP/1.1 200 OK")
        assert b"\r\nconnection: close\r\n" in second.lower()
        assert json.loads(second.partition(b"\r\n\r\n")[2])["predictions"] == [2]
        assert connection.recv(1) == b""  # the server closed it after the answer
    wait_for(lambda: not server.process.alive(), timeout=30, what="the server to exit")
    assert server.process.popen.returncode == 0


def test_after_sigterm_an_idle_connection_ends_at_the_keep_alive_timeout_and_the_server_exits(
    processes: ProcessGroup, iris_model_file: Path
) -> None:
    server = start_server(processes, str(iris_model_file), *pinned(iris_model_file)).wait_ready()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        assert request_on(connection, server.port).startswith(b"HTTP/1.1 200 OK")
        server.process.signal(signal.SIGTERM)
        assert connection.recv(1) == b""  # closed by uvicorn's keep-alive timeout, not left open
    wait_for(lambda: not server.process.alive(), timeout=30, what="the server to exit")
    assert server.process.popen.returncode == 0
