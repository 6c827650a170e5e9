"""The only module that talks to the Kubernetes API (besides Kopf's own watching).

Asynchronous (kubernetes_asyncio), so a slow call for one ModelDeployment never blocks
another. Owned objects are written with server-side apply under one field manager; the
ModelDeployment itself only ever gets its status written, and its action annotation removed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import ConfigException

from vigil_operator import constants as c
from vigil_operator.text import EVENT_LIMIT, bounded

__all__ = ["ApiException"]

FIELD_MANAGER = "vigil-operator"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
# kubernetes_asyncio's stubs leave out `_content_type`, which every API method accepts (and needs
# for apply and merge patches); the calls passing it carry `type: ignore[call-arg]`.

DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_IN_FLIGHT = 32
T = TypeVar("T")

_api: client.ApiClient | None = None
_timeout = DEFAULT_TIMEOUT_SECONDS
_max_in_flight = DEFAULT_MAX_IN_FLIGHT
_slots: asyncio.Semaphore | None = None


async def connect(timeout: float | None = None, max_in_flight: int | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a pod, otherwise $KUBECONFIG / ~/.kube/config.

    `timeout` bounds every later call (`VIGIL_API_TIMEOUT`): one stalled connection then fails
    its round, which is retried with backoff, instead of stalling its object for good.
    `max_in_flight` bounds the calls under way at once (`VIGIL_API_MAX_IN_FLIGHT`): a thousand
    objects starting together queue here, not in the API server, where they would time out.
    """
    global _api, _timeout, _max_in_flight
    if timeout is not None:
        _timeout = timeout
    if max_in_flight is not None:
        _max_in_flight = max_in_flight
    if _api is None:
        _api = await new_client()
    return _api


async def new_client() -> client.ApiClient:
    """A client of its own: leader election's, which must outlive the one Kopf's shutdown closes."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]  # unannotated upstream
    except ConfigException:
        # Read $KUBECONFIG now, not when the client library was imported.
        await config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
    return client.ApiClient()


async def close() -> None:
    global _api
    global _slots
    if _api is not None:
        await _api.close()
        _api = None
    _slots = None


def _plain(api: client.ApiClient, obj: Any) -> dict[str, Any]:
    plain: dict[str, Any] = api.sanitize_for_serialization(obj)
    return plain


async def _timed(call: Awaitable[T]) -> T:
    """Await one API call within the configured timeout (TimeoutError past it), once one of the
    `max_in_flight` slots is free: the timeout runs from the send, not from the queue."""
    global _slots
    if _slots is None:
        _slots = asyncio.Semaphore(_max_in_flight)
    async with _slots, asyncio.timeout(_timeout):
        return await call


class WatchCache:
    """The owned Deployments and Services as the operator's label-filtered watches last saw them.

    Backed by Kopf indexes keyed by (namespace, name), filled from the watch streams, so a round
    reads them without a request. Without indexes (None), each read is a GET.
    """

    def __init__(
        self, deployments: Mapping[Any, Any] | None = None, services: Mapping[Any, Any] | None = None
    ) -> None:
        self.deployments = deployments
        self.services = services

    async def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.deployments is None:
            return await read_deployment(namespace, name)
        return _first(self.deployments, (namespace, name))

    async def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.services is None:
            return await read_service(namespace, name)
        return _first(self.services, (namespace, name))


def _first(index: Mapping[Any, Any], key: tuple[str, str]) -> dict[str, Any] | None:
    """The one object an index holds under `key` (a Kopf index maps a key to a store of values)."""
    store = index.get(key)
    return next(iter(store), None) if store is not None else None


def cached_view(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the watch cache keeps of an owned object: all but `managedFields`, which is most of
    a Deployment's size and which no round reads."""
    metadata = {key: value for key, value in (body.get("metadata") or {}).items() if key != "managedFields"}
    return {**{key: value for key, value in body.items() if key != "metadata"}, "metadata": metadata}


async def read_model_deployment(namespace: str, name: str) -> dict[str, Any] | None:
    api = await connect()
    try:
        found: dict[str, Any] = await _timed(
            client.CustomObjectsApi(api).get_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, name
            )
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return found


async def read_deployment(namespace: str, name: str) -> dict[str, Any] | None:
    api = await connect()
    try:
        return _plain(api, await _timed(client.AppsV1Api(api).read_namespaced_deployment(name, namespace)))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


async def apply_deployment(deployment: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply of the fields the operator owns; returns the Deployment as stored.

    Fields left out (`replicas` when the spec leaves it unset) are not owned, so an HPA or
    `kubectl scale` keeps them. An apply that changes nothing writes nothing.
    """
    api = await connect()
    meta = deployment["metadata"]
    applied = await _timed(
        client.AppsV1Api(api).patch_namespaced_deployment(  # type: ignore[call-arg]
            meta["name"],
            meta["namespace"],
            deployment,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
        )
    )
    return _plain(api, applied)


async def apply_service(service: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply of a Service the operator owns; returns it as stored (with its ClusterIP)."""
    api = await connect()
    meta = service["metadata"]
    applied = await _timed(
        client.CoreV1Api(api).patch_namespaced_service(  # type: ignore[call-arg]
            meta["name"],
            meta["namespace"],
            service,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
        )
    )
    return _plain(api, applied)


async def write_status(
    namespace: str, name: str, status: dict[str, Any], resource_version: str
) -> dict[str, Any]:
    """Replace the status, only if the object is still the one the decision was made on (else 409).

    Returns the object as written (its new resourceVersion, for a second write in the same round).
    """
    api = await connect()
    body = {"metadata": {"resourceVersion": resource_version}, "status": status}
    return await _timed(
        client.CustomObjectsApi(api).patch_namespaced_custom_object_status(  # type: ignore[call-arg]
            c.GROUP,
            c.VERSION,
            namespace,
            c.PLURAL,
            name,
            body,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE,
        )
    )


async def clear_action(namespace: str, name: str) -> dict[str, Any]:
    """Remove the handled `vigil.dev/action` annotation (metadata, not spec: GitOps-safe);
    returns the object as patched."""
    api = await connect()
    body = {"metadata": {"annotations": {c.ANNOTATION_ACTION: None}}}
    return await _timed(
        client.CustomObjectsApi(api).patch_namespaced_custom_object(  # type: ignore[call-arg]
            c.GROUP,
            c.VERSION,
            namespace,
            c.PLURAL,
            name,
            body,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE,
        )
    )


async def read_secret(namespace: str, name: str) -> dict[str, bytes]:
    """The data of a Secret as bytes, key by key; the caller decodes the keys it needs (a
    binary value in another key must not break it) and keeps them out of logs and status."""
    api = await connect()
    secret = await _timed(client.CoreV1Api(api).read_namespaced_secret(name, namespace))
    return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}


async def read_secret_metadata(namespace: str, name: str) -> tuple[dict[str, Any], set[str]] | None:
    """A Secret's metadata and the names of its keys (not their values), or None if it is missing."""
    api = await connect()
    try:
        secret = await _timed(client.CoreV1Api(api).read_namespaced_secret(name, namespace))
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return _plain(api, secret.metadata), set(secret.data or {})


async def apply_secret(secret: dict[str, Any]) -> None:
    """Server-side apply of a Secret the operator owns (the feedback token)."""
    api = await connect()
    meta = secret["metadata"]
    await _timed(
        client.CoreV1Api(api).patch_namespaced_secret(  # type: ignore[call-arg]
            meta["name"],
            meta["namespace"],
            secret,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
        )
    )


def is_conflict(error: BaseException) -> bool:
    return isinstance(error, ApiException) and error.status == 409


# Invalid (422), malformed (400) or forbidden (403: RBAC, or a validating webhook's deny): the
# object as asked for will not be accepted until someone changes the spec or the cluster.
REFUSED = (400, 403, 422)


def refusal(error: ApiException) -> str | None:
    """The API server's message when it refused an object for good; None for a transient error."""
    if error.status not in REFUSED:
        return None
    try:
        message = json.loads(error.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return bounded(str(message or error.reason or f"HTTP {error.status}"))


async def post_event(owner: dict[str, Any], reason: str, message: str, *, warning: bool, now: str) -> None:
    """A core/v1 Event on the ModelDeployment (`kubectl describe mdep` and `kubectl get events`)."""
    api = await connect()
    meta = owner["metadata"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": owner.get("apiVersion", c.API_VERSION),
            "kind": owner.get("kind", c.KIND),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "reason": reason,
        "message": bounded(message, EVENT_LIMIT),
        "type": "Warning" if warning else "Normal",
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": f"{c.GROUP}/operator",
        "reportingInstance": FIELD_MANAGER,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    # Typed as the CoreV1Event model; the client serialises a plain dict just the same.
    await _timed(client.CoreV1Api(api).create_namespaced_event(meta["namespace"], event))  # type: ignore[arg-type]


async def read_service(namespace: str, name: str) -> dict[str, Any] | None:
    api = await connect()
    try:
        return _plain(api, await _timed(client.CoreV1Api(api).read_namespaced_service(name, namespace)))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


async def delete_deployment(namespace: str, name: str) -> bool:
    """Delete a Deployment the operator owns (a candidate's); whether there was one to delete.

    Its pods go in the background (the garbage collector), so the round never waits for them.
    """
    api = await connect()
    return await _deleted(client.AppsV1Api(api).delete_namespaced_deployment(name, namespace))


async def delete_service(namespace: str, name: str) -> bool:
    """Delete a Service the operator owns (a shadow's); whether there was one to delete."""
    api = await connect()
    return await _deleted(client.CoreV1Api(api).delete_namespaced_service(name, namespace))


async def _deleted(deletion: Awaitable[object]) -> bool:
    """Await a delete call: True once deleted, False when the object was already gone (404)."""
    try:
        await _timed(deletion)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


async def read_lease(
    api: client.ApiClient, namespace: str, name: str, timeout: float
) -> tuple[dict[str, Any], str] | None:
    """A Lease's spec and resourceVersion, or None when there is none."""
    try:
        lease = await client.CoordinationV1Api(api).read_namespaced_lease(
            name, namespace, _request_timeout=timeout
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    plain = _plain(api, lease)
    return plain.get("spec") or {}, str(plain["metadata"]["resourceVersion"])


async def write_lease(
    api: client.ApiClient,
    namespace: str,
    name: str,
    spec: dict[str, Any],
    resource_version: str | None,
    *,
    labels: dict[str, str],
    timeout: float,
) -> str:
    """Create the Lease (resource_version None) or replace it only if it is still at
    resource_version (else 409: another candidate wrote first); returns the new resourceVersion."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
    leases = client.CoordinationV1Api(api)
    if resource_version is None:
        written = await leases.create_namespaced_lease(namespace, body, _request_timeout=timeout)  # type: ignore[arg-type]
    else:
        metadata["resourceVersion"] = resource_version
        written = await leases.replace_namespaced_lease(name, namespace, body, _request_timeout=timeout)  # type: ignore[arg-type]
    return str(written.metadata.resource_version)
