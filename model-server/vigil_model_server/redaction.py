"""Model URIs without their secrets, for every message, response and log line that shows one.

A model URI may carry credentials in its userinfo (`https://user:password@host/...`) or in its
query string (a presigned URL's `X-Amz-Signature=...`). Neither is needed to say which model
failed, so both are replaced by `***` wherever a URI is shown.
"""

from __future__ import annotations

import logging
import re
import urllib.parse

_HIDDEN = "***"
# A URI inside free text (an exception's message, a log line): scheme://, then up to a space or quote.
_URI_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def redact_uri(uri: str) -> str:
    """`uri` with its userinfo, query string and fragment replaced by `***`; a plain path as is."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return "(an unparseable URI)"
    if not parts.scheme or (not parts.netloc and not parts.query and not parts.fragment):
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{_HIDDEN}@{netloc.rpartition('@')[2]}"
    query = _HIDDEN if parts.query else ""
    fragment = _HIDDEN if parts.fragment else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str) -> str:
    """`text` with every URI in it passed through `redact_uri`."""
    return _URI_IN_TEXT.sub(lambda match: redact_uri(match.group(0)), text)


class RedactingFilter(logging.Filter):
    """Redacts URIs in every record a handler writes, whichever library logged it (httpx does)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        # A record whose arguments do not fit its format: the handler reports that itself.
        except (TypeError, ValueError):
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def redact_logs(handlers: list[logging.Handler]) -> None:
    """Install `RedactingFilter` on `handlers` (the root logger's, so every logger is covered)."""
    for handler in handlers:
        handler.addFilter(RedactingFilter())
