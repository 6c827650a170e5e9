"""A stand-in kubelet for model-server pods: real server processes, real readiness.

kwok leaves pods annotated `kwok.x-k8s.io/status: custom` alone. For those pods this
thread does what a kubelet would: it runs the model server the pod's env describes (one
local process per release, shared by that release's pods; the container's other env, literal or
from Secrets through `valueFrom` and `envFrom`, reaches the process), mirrors the server's own
`/v2/health/ready` into the pod's Ready condition, and removes pods once deleted. It also
keeps Prometheus scraping exactly the running servers, with the `namespace` target label
that Kubernetes pod discovery would set.

It plays kube-proxy for the one address a server dials itself: a stable server's `MIRROR_URL`
(a shadow candidate's Service, by ClusterIP) is translated to the local process serving the
release that Service selects. And it knows which Ready pods the ModelDeployment's own Service
selects (`serving`), so traffic reaches a shadow candidate's pods only through the mirror.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from harness.cluster import VENV_BIN
from harness.kubeapi import KubeApi
from harness.ports import free_port
from harness.processes import LocalProcess, ProcessGroup
from harness.prometheus import LocalPrometheus, ScrapeTarget

CUSTOM_STATUS = {"kwok.x-k8s.io/status": "custom"}
POLL_SECONDS = 0.3


@dataclass(frozen=True)
class ServerKey:
    """What a pod's container env says to run."""

    uri: str
    name: str
    version: str
    sha256: str
    feedback_token: bool = False  # the pod mounts its ModelDeployment's feedback Secret
    mirror_url: str = ""  # MIRROR_URL as the cluster sees it (a Service's ClusterIP URL)
    stable_version: str = ""  # STABLE_VERSION: a shadow candidate paired with this stable version
    # The container's other env (AWS_*, MODEL_PVC_ROOT, ...), passed on as a kubelet would: literal
    # values, `valueFrom.secretKeyRef`s as (name, secret, key), `envFrom` Secrets as (secret, prefix).
    other_env: tuple[tuple[str, str], ...] = ()
    secret_env: tuple[tuple[str, str, str], ...] = ()
    env_from_secrets: tuple[tuple[str, str], ...] = ()


@dataclass
class RunningServer:
    key: ServerKey
    port: int
    process: LocalProcess
    token: str | None = None  # the feedback token it requires, when the pod mounts one

    @property
    def feedback_headers(self) -> dict[str, str]:
        """What a client of this server sends with labels."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# Env the stand-in kubelet turns into flags or translates itself; the rest reaches the server as is.
_TRANSLATED_ENV = frozenset(
    {
        "MODEL_URI",
        "MODEL_NAME",
        "MODEL_VERSION",
        "MODEL_SHA256",
        "MODEL_FEEDBACK_TOKEN_FILE",
        "MIRROR_URL",
        "STABLE_VERSION",
        "PORT",
        "HOST",
    }
)


def _server_key(pod: dict[str, Any]) -> ServerKey | None:
    containers = pod.get("spec", {}).get("containers") or []
    env = (
        {item["name"]: item.get("value", "") for item in (containers[0].get("env") or [])}
        if containers
        else {}
    )
    if not env.get("MODEL_URI"):
        return None
    items = containers[0].get("env") or []
    return ServerKey(
        env["MODEL_URI"],
        env.get("MODEL_NAME", ""),
        env.get("MODEL_VERSION", ""),
        env.get("MODEL_SHA256", ""),
        feedback_token=bool(env.get("MODEL_FEEDBACK_TOKEN_FILE")),
        mirror_url=env.get("MIRROR_URL", ""),
        stable_version=env.get("STABLE_VERSION", ""),
        other_env=tuple(
            sorted(
                (item["name"], item["value"])
                for item in items
                if "value" in item and item["name"] not in _TRANSLATED_ENV
            )
        ),
        secret_env=tuple(
            sorted(
                (item["name"], ref["name"], ref["key"])
                for item in items
                if (ref := (item.get("valueFrom") or {}).get("secretKeyRef"))
                and item["name"] not in _TRANSLATED_ENV
            )
        ),
        env_from_secrets=tuple(
            (source["secretRef"]["name"], source.get("prefix", ""))
            for source in (containers[0].get("envFrom") or [])
            if source.get("secretRef")
        ),
    )


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalKubelet:
    """Runs in a thread for one namespace; `stop()` ends it (processes belong to the group)."""

    def __init__(
        self, api: KubeApi, namespace: str, processes: ProcessGroup, prometheus: LocalPrometheus | None
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.processes = processes
        self.prometheus = prometheus
        self.servers: dict[ServerKey, RunningServer] = {}
        self.ready_pods: dict[str, ServerKey] = {}  # pod name -> what it serves
        self.in_service: set[str] = set()  # Ready pods the ModelDeployment's own Service selects
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"kubelet-{namespace}", daemon=True)
        self.errors: list[str] = []
        self._pod_ips = 0

    def start(self) -> LocalKubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def serving(self) -> list[RunningServer]:
        """The server of each Ready pod its ModelDeployment's Service selects (a release with two
        such pods appears twice, so a uniform pick is what kube-proxy's random choice would be);
        a shadow candidate's pods are not among them."""
        with self._lock:
            return [
                self.servers[key]
                for pod, key in self.ready_pods.items()
                if key in self.servers and pod in self.in_service
            ]

    def server_for(self, version: str) -> RunningServer | None:
        with self._lock:
            return next((s for k, s in self.servers.items() if k.version == version), None)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except (httpx.HTTPError, KeyError) as error:
                self.errors.append(repr(error))
            self._stop.wait(POLL_SECONDS)

    def _sync(self) -> None:
        pods = self.api.get(f"/api/v1/namespaces/{self.namespace}/pods")["items"]
        services = self.api.get(f"/api/v1/namespaces/{self.namespace}/services")["items"]
        ready: dict[str, ServerKey] = {}
        in_service: set[str] = set()
        # Servers that mirror start after the ones they mirror to, whose local address they need.
        pods.sort(key=lambda pod: bool((_server_key(pod) or ServerKey("", "", "", "")).mirror_url))
        for pod in pods:
            meta = pod["metadata"]
            annotations = meta.get("annotations") or {}
            if any(annotations.get(k) != v for k, v in CUSTOM_STATUS.items()):
                continue
            path = f"/api/v1/namespaces/{self.namespace}/pods/{meta['name']}"
            if meta.get("deletionTimestamp"):
                self.api.delete(path, gracePeriodSeconds=0)
                continue
            key = _server_key(pod)
            if key is None or not pod.get("spec", {}).get("nodeName"):
                continue
            server = self._ensure_server(key, pods, services)
            if server is None:
                continue  # what it mirrors to runs nowhere yet: the pod waits, not Ready
            is_ready = self._probe(server)
            if is_ready:
                ready[meta["name"]] = key
                own = next((svc for svc in services if svc["metadata"]["name"] == key.name), None)
                if own is None or _selects(own["spec"].get("selector") or {}, meta.get("labels") or {}):
                    in_service.add(meta["name"])
            self._report(path, pod, is_ready)
        with self._lock:
            self.ready_pods = ready
            self.in_service = in_service

    def _proxied(self, url: str, pods: list[dict[str, Any]], services: list[dict[str, Any]]) -> str | None:
        """kube-proxy's part: the local address of the release that the Service at `url` (its
        ClusterIP and port) selects, or None while no pod of it exists."""
        parts = urlsplit(url)
        service = next(
            (
                svc
                for svc in services
                if svc["spec"].get("clusterIP") == parts.hostname
                and any(port.get("port") == parts.port for port in svc["spec"].get("ports") or [])
            ),
            None,
        )
        if service is None:
            return None
        selector = service["spec"].get("selector") or {}
        for pod in pods:
            key = _server_key(pod)
            if (
                key is not None
                and not key.mirror_url
                and _selects(selector, pod["metadata"].get("labels") or {})
            ):
                server = self._ensure_server(key, pods, services)
                return None if server is None else server.url
        return None

    def _ensure_server(
        self, key: ServerKey, pods: list[dict[str, Any]], services: list[dict[str, Any]]
    ) -> RunningServer | None:
        if key in self.servers and self.servers[key].process.alive():
            return self.servers[key]
        env = {**self._secret_env(key), **dict(key.other_env)}
        if key.stable_version:
            env["STABLE_VERSION"] = key.stable_version
        if key.mirror_url:
            local = self._proxied(key.mirror_url, pods, services)
            if local is None:
                return None
            env["MIRROR_URL"] = local
        port = free_port()
        argv = [str(VENV_BIN / "vigil-model-server"), "--model-uri", key.uri, "--model-name", key.name]
        argv += ["--model-version", key.version, "--host", "127.0.0.1", "--port", str(port)]
        if key.sha256:
            argv += ["--sha256", key.sha256]
        token = self._feedback_token(key) if key.feedback_token else None
        if token is not None:
            # What the Secret volume would hold: the same token, in a file only the server reads.
            path = self.processes.log_dir / f"{key.name}-{key.version}-{port}.token"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(token)
            path.chmod(0o600)
            argv += ["--feedback-token-file", str(path)]
        process = self.processes.start(f"model-server-{key.version}", argv, env=env)
        with self._lock:
            self.servers[key] = RunningServer(key, port, process, token)
        if self.prometheus is not None:
            self.prometheus.set_targets(
                [
                    ScrapeTarget(f"127.0.0.1:{s.port}", {"namespace": self.namespace})
                    for s in self.servers.values()
                ]
            )
        return self.servers[key]

    def _secret_env(self, key: ServerKey) -> dict[str, str]:
        """What the kubelet resolves from Secrets: `envFrom` first, then `env`'s secretKeyRefs
        (env wins, as in Kubernetes); a missing Secret is a KeyError or 404, the pod waits."""
        env: dict[str, str] = {}
        for secret, prefix in key.env_from_secrets:
            for name, value in self._secret(secret).items():
                if name not in _TRANSLATED_ENV:
                    env[prefix + name] = value
        for name, secret, item in key.secret_env:
            env[name] = self._secret(secret)[item]
        return env

    def _secret(self, name: str) -> dict[str, str]:
        secret = self.api.get(f"/api/v1/namespaces/{self.namespace}/secrets/{name}")
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def _feedback_token(self, key: ServerKey) -> str:
        """The token in the ModelDeployment's `<name>-feedback` Secret (a 404 until the operator
        made it: the pod waits, as a real one waits for its volume)."""
        secret = self.api.get(f"/api/v1/namespaces/{self.namespace}/secrets/{key.name}-feedback")
        return base64.b64decode(secret["data"]["token"]).decode()

    def _pod_ip(self) -> str:
        self._pod_ips += 1
        return f"10.0.{self._pod_ips // 250}.{self._pod_ips % 250 + 2}"

    @staticmethod
    def _probe(server: RunningServer) -> bool:
        try:
            return httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def _report(self, path: str, pod: dict[str, Any], ready: bool) -> None:
        status = pod.get("status") or {}
        current = {c["type"]: c["status"] for c in status.get("conditions") or []}
        wanted = "True" if ready else "False"
        if status.get("phase") == "Running" and current.get("Ready") == wanted:
            return
        now = _now()
        conditions = [
            {"type": kind, "status": value, "lastTransitionTime": now}
            for kind, value in (
                ("PodScheduled", "True"),
                ("Initialized", "True"),
                ("ContainersReady", wanted),
                ("Ready", wanted),
            )
        ]
        container = pod["spec"]["containers"][0]
        body = {
            "status": {
                "phase": "Running",
                "conditions": conditions,
                # Endpoints refuse loopback addresses; the servers' real address is 127.0.0.1.
                "hostIP": "10.0.0.1",
                "podIP": status.get("podIP") or self._pod_ip(),
                "startTime": status.get("startTime") or now,
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": "",
                        "ready": ready,
                        "started": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            }
        }
        self.api.merge_patch(f"{path}/status", body)
