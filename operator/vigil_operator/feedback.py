"""The feedback token of a ModelDeployment: when the operator writes a new one, and the Secret.

The model server requires `Authorization: Bearer <token>` on /feedback; the token lives in the
Secret `<name>-feedback` (key `token`), owned by the ModelDeployment and mounted into its pods.
Rotation never touches the Deployment: the kubelet updates a mounted Secret in place and the
server re-reads the file, so no pod restarts.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from vigil_operator import constants as c
from vigil_operator.builders import Owner, common_labels, feedback_secret_name, owner_reference


def rotation_requested(body: dict[str, Any]) -> str | None:
    """The value of the rotate annotation on the ModelDeployment, if any."""
    value = (body.get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_ROTATE_FEEDBACK_TOKEN)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def needs_new_token(existing: tuple[dict[str, Any], set[str]] | None, rotation: str | None) -> bool:
    """Write a token when the Secret is missing, has no token, or a rotation value is new to it.

    An existing token is never overwritten otherwise (clients hold it); a Secret someone created
    beforehand with a `token` key is kept as it is.
    """
    if existing is None:
        return True
    metadata, keys = existing
    if c.FEEDBACK_TOKEN_KEY not in keys:
        return True
    handled = (metadata.get("annotations") or {}).get(c.ANNOTATION_FEEDBACK_ROTATION)
    return rotation is not None and rotation != handled


def new_token() -> str:
    return secrets.token_urlsafe(32)


def feedback_secret_for(owner: Owner, token: str, rotation: str | None) -> dict[str, Any]:
    """The Secret holding `token`, owned by the ModelDeployment (deleted with it)."""
    metadata: dict[str, Any] = {
        "name": feedback_secret_name(owner.name),
        "namespace": owner.namespace,
        "labels": common_labels(owner),
        "ownerReferences": [owner_reference(owner)],
    }
    if rotation is not None:
        metadata["annotations"] = {c.ANNOTATION_FEEDBACK_ROTATION: rotation}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {c.FEEDBACK_TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }
