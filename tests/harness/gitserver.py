"""A git server over smart HTTP on 127.0.0.1: Debian's `git http-backend` (CGI) behind a small
threaded http.server, holding bare repositories in one folder. Clients (Flux's source-controller,
the test's own `git push`) speak the real protocol to it; pushes are allowed.

`GitWorkspace` is the test's clone: write files, commit, push, and read the log.
"""

from __future__ import annotations

import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HTTP_BACKEND = Path("/usr/lib/git-core/git-http-backend")
# Commits with a fixed identity, and no user or system git configuration read.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Vigil Tests",
    "GIT_AUTHOR_EMAIL": "tests@vigil.dev",
    "GIT_COMMITTER_NAME": "Vigil Tests",
    "GIT_COMMITTER_EMAIL": "tests@vigil.dev",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: Path, home: Path) -> str:
    """Run git in `cwd` with only the test's own configuration (HOME is `home`)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **GIT_ENV}
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, text=True, capture_output=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


class _CgiHandler(BaseHTTPRequestHandler):
    """Passes each request to `git http-backend` as CGI and relays its answer."""

    server: GitHttpServer

    def do_GET(self) -> None:
        self._backend()

    def do_POST(self) -> None:
        self._backend()

    def _backend(self) -> None:
        path, _, query = self.path.partition("?")
        body = self._body()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.server.root),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            # http-backend allows pushes only from an authenticated user (or receivepack=true).
            "REMOTE_USER": "vigil-tests",
            "REMOTE_ADDR": self.client_address[0],
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_PROTOCOL": self.request_version,
        }
        for header in ("Content-Encoding", "Git-Protocol", "Accept"):
            if header in self.headers:
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        result = subprocess.run([str(HTTP_BACKEND)], input=body, env=env, capture_output=True, timeout=60)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.server.requests.append(f"{self.command} {path} {status}")
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> bytes:
        """The request body, plain or chunked (git sends a large push in chunks)."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        return b"".join(chunks)

    def log_message(self, format: str, *args: object) -> None:
        """Requests are kept in `server.requests`, not printed."""


class GitHttpServer(ThreadingHTTPServer):
    """Serves every bare repository under `root` at http://127.0.0.1:PORT/<name>.git."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _CgiHandler)
        self.root = root
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, name="git-http", daemon=True)

    @classmethod
    def start(cls, root: Path) -> GitHttpServer:
        if not HTTP_BACKEND.exists():
            raise RuntimeError(f"{HTTP_BACKEND} missing: install Debian's git")
        root.mkdir(parents=True, exist_ok=True)
        server = cls(root)
        server._thread.start()
        return server

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}.git"

    def create_repository(self, name: str) -> str:
        """A new empty bare repository whose default branch is main; returns its URL."""
        bare = self.root / f"{name}.git"
        git("init", "--bare", "--initial-branch=main", str(bare), cwd=self.root, home=self.root)
        return self.url(name)


class GitWorkspace:
    """A clone of one repository on the server: the test's side of git."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.home = folder.parent / f"{folder.name}-home"
        self.home.mkdir(parents=True, exist_ok=True)
        git("clone", "--quiet", url, str(folder), cwd=folder.parent, home=self.home)
        self.git("checkout", "--quiet", "-B", "main")

    def git(self, *args: str) -> str:
        return git(*args, cwd=self.folder, home=self.home)

    def write(self, path: str, text: str) -> None:
        target = self.folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def commit_and_push(self, message: str) -> str:
        """Commit everything and push it over HTTP; returns the new commit's full hash."""
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message)
        return self.push()

    def push(self) -> str:
        self.git("push", "--quiet", "origin", "main")
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def log(self) -> str:
        return self.git("log", "--format=%h %s", "--stat=72")
