"""Prometheus access as real installations need it, against a real Prometheus.

Prometheus here serves HTTPS with a self-signed certificate and basic auth (its own
`--web.config.file`); the operator's adapter must pass the CA bundle and the credentials,
and must never put a credential into an error message.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx
import pytest
import yaml

from harness.cluster import LocalCluster
from harness.ports import free_port
from harness.processes import ProcessGroup
from harness.prometheus import prometheus_binary
from harness.silent import silent_server
from harness.waiting import wait_for
from vigil_operator import kube, prometheus
from vigil_operator.prometheus import PrometheusAccess
from vigil_operator.reconcile import prometheus_access
from vigil_operator.releases import AnalysisSpec

USER, PASSWORD = "reader", "s3cret-Pa55word"


@dataclass(frozen=True)
class SecuredPrometheus:
    url: str
    ca_cert: str


@pytest.fixture
def secured_prometheus(processes: ProcessGroup, tmp_path: Path) -> SecuredPrometheus:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    web_config = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_config.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
                "basic_auth_users": {USER: hashed},
            }
        )
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": []}))
    port = free_port()
    process = processes.start(
        "prometheus-secured",
        [
            prometheus_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.config.file={web_config}",
            "--log.level=warn",
        ],
    )
    url = f"https://127.0.0.1:{port}"
    tls = ssl.create_default_context(cafile=str(cert))

    def ready() -> bool:
        assert process.alive(), process.log()
        return httpx.get(f"{url}/-/ready", verify=tls, auth=(USER, PASSWORD), timeout=2).status_code == 200

    wait_for(ready, timeout=60, what="the secured Prometheus")
    return SecuredPrometheus(url=url, ca_cert=cert.read_text())


@pytest.mark.prometheus
def test_basic_auth_and_ca_bundle_reach_the_value(secured_prometheus: SecuredPrometheus) -> None:
    access = PrometheusAccess(
        url=secured_prometheus.url, username=USER, password=PASSWORD, ca_cert=secured_prometheus.ca_cert
    )
    measurement = asyncio.run(_measure(access, "vector(0.93)", builtin=False))
    assert measurement.error is None
    assert measurement.value == pytest.approx(0.93)


@pytest.mark.prometheus
def test_wrong_credentials_are_an_error_that_names_no_credential(
    secured_prometheus: SecuredPrometheus,
) -> None:
    access = PrometheusAccess(
        url=secured_prometheus.url,
        username=USER,
        password="wrong-" + PASSWORD,
        ca_cert=secured_prometheus.ca_cert,
    )
    measurement = asyncio.run(_measure(access, "vector(1)", builtin=False))
    assert measurement.error is not None
    assert "refused the credentials" in measurement.error
    assert PASSWORD not in measurement.error
    assert USER not in measurement.error
    assert PASSWORD not in repr(access)


@pytest.mark.prometheus
def test_an_untrusted_certificate_is_an_error_not_a_silent_downgrade(
    secured_prometheus: SecuredPrometheus,
) -> None:
    access = PrometheusAccess(url=secured_prometheus.url, username=USER, password=PASSWORD)
    measurement = asyncio.run(_measure(access, "vector(1)", builtin=False))
    assert measurement.error is not None
    assert "unreachable" in measurement.error
    assert PASSWORD not in measurement.error


@pytest.fixture
def hung_prometheus() -> Iterator[str]:
    with silent_server() as url:
        yield url


def test_a_hung_prometheus_times_out_into_an_error(hung_prometheus: str) -> None:
    access = PrometheusAccess(url=hung_prometheus, timeout=0.5)
    measurement = asyncio.run(_measure(access, "vector(1)", builtin=True))
    assert measurement.error is not None
    assert "did not answer within 0.5s" in measurement.error


def test_credentials_in_the_url_are_kept_out_of_errors() -> None:
    port = free_port()  # nothing listens there
    access = PrometheusAccess(url=f"http://{USER}:{PASSWORD}@127.0.0.1:{port}", timeout=2)
    measurement = asyncio.run(_measure(access, "vector(1)", builtin=False))
    assert measurement.error is not None
    assert PASSWORD not in measurement.error


@pytest.mark.cluster
def test_credentials_come_from_the_named_secret(
    cluster: LocalCluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "prom-reader", "namespace": namespace},
        "data": {
            "url": base64.b64encode(b"https://prometheus.example:9090").decode(),
            "username": base64.b64encode(USER.encode()).decode(),
            "password": base64.b64encode(PASSWORD.encode()).decode(),
            "ca.crt": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode(),
        },
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(secret))
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    analysis = AnalysisSpec(
        prometheus_url="https://prometheus.example:9090", credentials_secret="prom-reader"
    )

    async def read() -> PrometheusAccess:
        try:
            return await prometheus_access(analysis, namespace)
        finally:
            await kube.close()

    access = asyncio.run(read())
    assert access.url == "https://prometheus.example:9090"
    assert (access.username, access.password) == (USER, PASSWORD)
    assert access.ca_cert == "-----BEGIN CERTIFICATE-----\n"
    assert access.token is None


async def _measure(access: PrometheusAccess, query: str, *, builtin: bool) -> prometheus.Measurement:
    try:
        return await prometheus.measure(access, query, builtin=builtin)
    finally:
        await prometheus.close()
