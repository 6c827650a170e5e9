"""Time a model load from each storage scheme (`make bench-storage`): file://, pvc://, http://
and s3://, each from a real local server on 127.0.0.1 (the project's HTTP model store, SeaweedFS
for S3; a folder standing where the operator mounts a claim, for pvc://).

Two models: the iris LogisticRegression the tests use (about 1 KB: a load is all overhead) and a
random forest of a few MB. For each scheme and model: the median of the in-process `load_model`
times (fetch, sha256, deserialise, check), and one cold start of `vigil-model-server` to its
first ready answer. It reports; it has no goal to miss (gs:// is not timed: no GCS server here).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import joblib
from sklearn.ensemble import RandomForestClassifier

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "model-server")]

from harness.model_store import ModelStore  # noqa: E402
from harness.models import iris, train  # noqa: E402
from harness.ports import free_port  # noqa: E402
from harness.processes import ProcessGroup  # noqa: E402
from harness.s3server import S3Server  # noqa: E402
from vigil_model_server.loader import LoadOptions, load_model  # noqa: E402

SERVER = Path(sys.executable).parent / "vigil-model-server"


def models(folder: Path) -> dict[str, Path]:
    small = train(folder / "iris.joblib").path
    forest = folder / "forest.joblib"
    joblib.dump(RandomForestClassifier(n_estimators=300, random_state=0).fit(*iris()), forest)
    return {"iris": small, "forest": forest}


def cold_start(processes: ProcessGroup, uri: str, digest: str, env: dict[str, str]) -> float:
    """Seconds from starting the server process to its first 200 on /v2/health/ready."""
    port = free_port()
    argv = [str(SERVER), "--model-uri", uri, "--model-name", "m", "--model-version", "1"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--sha256", digest]
    started = time.monotonic()
    process = processes.start("model-server", argv, env=env)
    try:
        while time.monotonic() - started < 120:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            if not process.alive():
                raise RuntimeError(f"{uri}: the server exited:\n{process.log()[-2000:]}")
            time.sleep(0.02)
        raise RuntimeError(f"{uri}: not ready within 120 s")
    finally:
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="in-process loads per scheme and model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-storage-") as tmp:
        folder = Path(tmp)
        files = models(folder)
        processes = ProcessGroup(log_dir=folder / "logs")
        store = ModelStore()
        s3 = S3Server.start(folder / "s3", processes)
        try:
            store.start()
            s3.create_bucket("models")
            pvc_root = folder / "pvc"
            (pvc_root / "models").mkdir(parents=True)
            uris: dict[str, dict[str, str]] = {}
            for name, path in files.items():
                content = path.read_bytes()
                store.files[f"/{name}.joblib"] = content
                s3.put("models", f"{name}/model.joblib", content)
                (pvc_root / "models" / f"{name}.joblib").write_bytes(content)
                uris[name] = {
                    "file": path.as_uri(),
                    "pvc": f"pvc://models/{name}.joblib",
                    "http": f"{store.url}/{name}.joblib",
                    "s3": f"s3://models/{name}/model.joblib",
                }
            os.environ.update(s3.env)
            server_env = {**s3.env, "MODEL_PVC_ROOT": str(pvc_root)}
            print(
                f"{'model':8} {'size':>10} {'scheme':6} {'load_model median (ms)':>24} {'cold start (s)':>16}"
            )
            for name, path in files.items():
                content = path.read_bytes()
                digest = hashlib.sha256(content).hexdigest()
                options = LoadOptions(sha256=digest, pvc_root=str(pvc_root))
                for scheme, uri in uris[name].items():
                    load_model(uri, options)  # warm: imports, connection set-up
                    times = []
                    for _ in range(args.rounds):
                        started = time.perf_counter()
                        load_model(uri, options)
                        times.append(time.perf_counter() - started)
                    cold = cold_start(processes, uri, digest, server_env)
                    print(
                        f"{name:8} {len(content):>10} {scheme:6} "
                        f"{statistics.median(times) * 1000:>24.1f} {cold:>16.2f}"
                    )
        finally:
            store.stop()
            processes.close()


if __name__ == "__main__":
    main()
