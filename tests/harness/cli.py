"""`make cluster-up` / `make cluster-down`: the tests' local cluster, by hand.

The cluster lives in .work/cluster/ with its own kubeconfig; it never touches ~/.kube.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.cluster import REPO_ROOT, LocalCluster

STATE_DIR = REPO_ROOT / ".work" / "cluster"
STATE_FILE = STATE_DIR / "cluster.json"


def up() -> int:
    if STATE_FILE.exists():
        name = json.loads(STATE_FILE.read_text())["name"]
        print(f"cluster {name} is already up; `make cluster-down` stops it")
    else:
        print("starting the local cluster (kube-apiserver, etcd, controller-manager, scheduler, kwok) ...")
        cluster = LocalCluster.start(STATE_DIR / "run")
        cluster.apply_crds()
        STATE_FILE.write_text(
            json.dumps(
                {"name": cluster.name, "workdir": str(cluster.workdir), "kubeconfig": str(cluster.kubeconfig)}
            )
        )
        name = cluster.name
    kubeconfig = json.loads(STATE_FILE.read_text())["kubeconfig"]
    print(f"cluster {name} is up. Use it with:")
    print(f"  export KUBECONFIG={kubeconfig}")
    print(f"  export PATH={REPO_ROOT}/.venv/bin:$PATH")
    print("  kubectl get nodes")
    return 0


def down() -> int:
    if not STATE_FILE.exists():
        print("no local cluster is up")
        return 0
    state = json.loads(STATE_FILE.read_text())
    LocalCluster(name=state["name"], workdir=Path(state["workdir"])).stop()
    STATE_FILE.unlink(missing_ok=True)
    print(f"cluster {state['name']} stopped and removed")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    return up() if parser.parse_args().action == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
