"""A small REST client for tests: the API server of the test cluster, with its own kubeconfig.

The harness's stand-in kubelet polls and patches pods several times a second; spawning
kubectl for that would cost more than the work itself.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import yaml


class KubeApi:
    """Client-certificate access as written by kwokctl into the cluster's kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        context_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        tls = ssl.create_default_context(cafile=cluster["certificate-authority"])
        tls.load_cert_chain(user["client-certificate"], user["client-key"])
        self.client = httpx.Client(base_url=cluster["server"], verify=tls, timeout=10)

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.patch(
            path, json=body, headers={"Content-Type": "application/merge-patch+json"}
        )
        response.raise_for_status()
        return response.json()

    def delete(self, path: str, **params: Any) -> None:
        response = self.client.delete(path, params=params)
        if response.status_code != 404:
            response.raise_for_status()

    def close(self) -> None:
        self.client.close()
