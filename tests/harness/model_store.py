"""A real HTTP(S) model store on 127.0.0.1 that misbehaves on request, for the loading tests.

It serves files from memory and can: start late (on a port chosen up front), answer a path with
failing statuses first, redirect, drip a file one byte at a time, and leave out Content-Length.
With `tls=True` it speaks HTTPS with a self-signed certificate made by `openssl`; clients trust
it through `SSL_CERT_FILE=store.certificate` (httpx honours that variable).
"""

from __future__ import annotations

import hashlib
import http.server
import shutil
import ssl
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from harness.ports import free_port


@dataclass
class ModelStore:
    """Files by path (`/model.joblib`), and the ways to misbehave for each path."""

    certificate_dir: Path | None = None
    port: int = field(default_factory=free_port)
    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    failing: dict[str, list[int]] = field(default_factory=dict)  # statuses answered first, in order
    drip_seconds: dict[str, float] = field(default_factory=dict)  # pause between the bytes of a file
    undeclared_length: set[str] = field(default_factory=set)  # no Content-Length: read to the end
    requests: list[str] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def scheme(self) -> str:
        return "https" if self.certificate_dir is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def certificate(self) -> Path:
        assert self.certificate_dir is not None, "only a TLS store has a certificate"
        return self.certificate_dir / "store.crt"

    def start(self) -> ModelStore:
        """Listen on `port` (chosen at creation, so a client can be pointed at a store not up yet)."""
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        if self.certificate_dir is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*_self_signed_certificate(self.certificate_dir))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, name=f"model-store-{self.port}", daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler_for(store: ModelStore) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            store.requests.append(path)
            statuses = store.failing.get(path)
            if statuses:
                self.send_error(statuses.pop(0))
            elif path in store.redirects:
                self.send_response(302)
                self.send_header("Location", store.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path in store.files:
                self._send_file(path, store.files[path])
            else:
                self.send_error(404)

        def _send_file(self, path: str, content: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            # What object stores send and their clients require (obstore's GCS reader does).
            self.send_header("Last-Modified", "Mon, 30 Nov 2026 12:00:00 GMT")
            self.send_header("ETag", f'"{hashlib.md5(content).hexdigest()}"')
            if path not in store.undeclared_length:
                self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            pause = store.drip_seconds.get(path)
            try:
                if pause is None:
                    self.wfile.write(content)
                    return
                for index in range(len(content)):
                    if store._stopping.is_set():
                        return
                    self.wfile.write(content[index : index + 1])
                    self.wfile.flush()
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the client gave up: what the slow and oversized cases expect

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def _self_signed_certificate(directory: Path) -> tuple[str, str]:
    certificate, key = directory / "store.crt", directory / "store.key"
    if not certificate.exists():
        openssl = shutil.which("openssl")
        assert openssl, "a TLS model store needs openssl on PATH"
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
                *("-keyout", str(key), "-out", str(certificate)),
            ],
            check=True,
            capture_output=True,
        )
    return str(certificate), str(key)
