"""A real S3-compatible server on 127.0.0.1: SeaweedFS's S3 gateway (`weed server -s3`), built from
its Go module by hack/seaweedfs.sh into bin/weed.

`S3Server.start()` runs master, volume server, filer and S3 gateway in one process on free ports,
with one identity (`access_key`/`secret_key`, allowed everything); `create_bucket` and `put` fill
it (bucket creation is a SigV4-signed PUT by hand: obstore, the model server's client, has no
bucket operations; objects go up through obstore, the same client that reads them). `env` is the
AWS_* environment a client needs to reach it.

    with S3Server.start(tmp_path) as s3:
        s3.create_bucket("models")
        s3.put("models", "iris/v1/model.joblib", content)
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import secrets
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from harness.cluster import BIN_DIR
from harness.ports import free_port
from harness.processes import LocalProcess, ProcessGroup
from harness.waiting import wait_for

WEED = BIN_DIR / "weed"
REGION = "us-east-1"


@dataclass
class S3Server:
    """One SeaweedFS server (all roles in one process) with its S3 gateway on `port`."""

    workdir: Path
    processes: ProcessGroup
    port: int = field(default_factory=free_port)
    access_key: str = field(default_factory=lambda: "vigil" + secrets.token_hex(6))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    process: LocalProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a client (the model server) needs: the standard AWS_* variables."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
        }

    @classmethod
    def start(cls, workdir: Path, processes: ProcessGroup | None = None) -> S3Server:
        """Start SeaweedFS in `workdir` and wait until its S3 gateway answers."""
        assert WEED.exists(), f"{WEED} is missing: run hack/seaweedfs.sh (make deps builds it)"
        workdir.mkdir(parents=True, exist_ok=True)
        server = cls(workdir, processes or ProcessGroup(log_dir=workdir / "logs"))
        config = workdir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "vigil-tests",
                            "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        config.chmod(0o600)
        (workdir / "data").mkdir(exist_ok=True)
        ports = {role: free_port() for role in ("master", "volume", "filer")}
        grpc = {role: free_port() for role in ("master", "volume", "filer", "s3")}
        argv = [
            str(WEED),
            "server",
            f"-dir={workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            "-volume.max=8",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            f"-filer.localSocket={workdir / 'filer.sock'}",
            "-s3",
            f"-s3.port={server.port}",
            f"-s3.port.grpc={grpc['s3']}",
            "-s3.port.iceberg=0",
            f"-s3.localSocket={workdir / 's3.sock'}",
            f"-s3.config={config}",
        ]
        server.process = server.processes.start("seaweedfs", argv, cwd=workdir)
        wait_for(server._ready, timeout=120, interval=0.5, what="SeaweedFS's S3 gateway")
        return server

    def _ready(self) -> bool:
        assert self.process is not None
        if not self.process.alive():
            raise RuntimeError(f"SeaweedFS exited:\n{self.process.log()[-3000:]}")
        try:
            # Signed ListBuckets: 200 once the gateway, the filer and the identities are up.
            return self._signed("GET", "/").status_code == 200
        except httpx.TransportError:
            return False

    def create_bucket(self, bucket: str) -> None:
        response = self._signed("PUT", f"/{bucket}")
        assert response.status_code == 200, f"CreateBucket {bucket}: {response.status_code} {response.text}"

    def put(self, bucket: str, key: str, content: bytes) -> None:
        """Upload through obstore, the client the model server reads with."""
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            bucket,
            endpoint=self.endpoint,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            region=REGION,
            client_options={"allow_http": True},
        )
        obstore.put(store, key, content)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> S3Server:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _signed(self, method: str, path: str) -> httpx.Response:
        """An empty-bodied request signed with AWS Signature Version 4 (path-style, region REGION)."""
        now = datetime.datetime.now(datetime.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        host = f"127.0.0.1:{self.port}"
        payload = hashlib.sha256(b"").hexdigest()
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
        signed_headers = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                method,
                urllib.parse.quote(path),
                "",
                *(f"{name}:{headers[name]}" for name in sorted(headers)),
                "",
                signed_headers,
                payload,
            ]
        )
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = f"AWS4{self.secret_key}".encode()
        for part in (day, REGION, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return httpx.request(method, f"{self.endpoint}{path}", headers=headers, timeout=10)
