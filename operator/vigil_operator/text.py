"""Bounded messages: whatever goes into status, events or logs is cut to a readable length.

Parts of these messages come from outside the operator (a Prometheus error string, an API
server's refusal); a tenant who controls one must not be able to grow the operator's
memory, its status writes or the event stream with it.
"""

from __future__ import annotations

MESSAGE_LIMIT = 512  # status messages, check reasons, conditions, log lines
EVENT_LIMIT = 1024  # core/v1 Event messages (the API server's own cap is 1 KiB in events.k8s.io)


def bounded(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` cut to at most `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    suffix = f"... (cut, {len(text)} characters in all)"
    keep = max(0, limit - len(suffix))
    return text[:keep] + suffix[: limit - keep]
