"""The bearer token that feedback requires, read from a file and re-read whenever the file changes."""

from __future__ import annotations

import hmac
import logging
import os

from vigil_model_server.errors import ApiError

log = logging.getLogger("vigil_model_server")

_CHALLENGE = 'Bearer realm="vigil-feedback"'


class FeedbackToken:
    """Checks `Authorization: Bearer <token>` against the file at `path`; no path: every request passes.

    The file is a mounted Secret, which the kubelet replaces in place (a new file behind a symlink)
    when the Secret changes: each check stats it and re-reads it when it changed, so a rotated token
    takes effect without a restart.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._seen: tuple[int, int, int, int] | None = None
        self._token: bytes | None = None
        self._problem: str | None = None
        self._reported: str | None = None

    @property
    def required(self) -> bool:
        """Whether feedback needs a token at all."""
        return self.path is not None

    def current(self) -> bytes | None:
        """The token to present to this model's shadow candidate; None if there is none."""
        if self.path is None:
            return None
        try:
            return self._current(self.path)
        except ApiError:
            return None

    def check(self, authorization: str | None) -> None:
        """Pass, or raise 401 (no or wrong token) or 503 (the token file is missing or empty)."""
        if self.path is None:
            return
        token = self._current(self.path)
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ApiError(
                401,
                "feedback needs the header Authorization: Bearer <token>, with the token of this "
                "model's feedback Secret",
                {"WWW-Authenticate": _CHALLENGE},
            )
        if not hmac.compare_digest(presented.strip().encode(), token):
            raise ApiError(
                401,
                "the bearer token is not this model's feedback token (rotated? read the Secret again)",
                {"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
            )

    def _current(self, path: str) -> bytes:
        try:
            status = os.stat(path)
        except OSError as error:
            self._seen, self._token = None, None
            self._problem = f"the feedback token file {path} cannot be read: {error.strerror}"
        else:
            seen = (status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size)
            if seen != self._seen:
                self._seen = seen
                self._token, self._problem = _read_token(path)
        if self._token is None:
            if self._problem != self._reported:
                log.error("refusing feedback: %s", self._problem)
            self._reported = self._problem
            raise ApiError(503, f"feedback is refused until the server has a token: {self._problem}")
        if self._reported is not None:
            log.info("feedback token read from %s", path)
            self._reported = None
        return self._token


def _read_token(path: str) -> tuple[bytes | None, str | None]:
    """The token in the file at `path` (surrounding whitespace removed), or why there is none."""
    try:
        with open(path, "rb") as file:
            token = file.read().strip()
    except OSError as error:
        return None, f"the feedback token file {path} cannot be read: {error.strerror}"
    if not token:
        return None, f"the feedback token file {path} is empty"
    return token, None
