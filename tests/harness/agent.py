"""The stand-in kubelet and the labelled traffic as a process of their own.

The demo starts this so that, with KEEP=1, the pods keep their real servers and the
traffic keeps flowing after the demo's own process has exited. SIGTERM stops it and
every model server it started.

    python -m harness.agent --kubeconfig K --namespace ml --prometheus-dir D --prometheus-port P
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from harness.kubeapi import KubeApi
from harness.kubelet import LocalKubelet
from harness.processes import ProcessGroup
from harness.prometheus import LocalPrometheus
from harness.traffic import TrafficGenerator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--prometheus-dir", type=Path, required=True)
    parser.add_argument("--prometheus-port", type=int, required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument("--rows-per-second", type=int, default=100)
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    processes = ProcessGroup(log_dir=args.log_dir)
    prometheus = LocalPrometheus(workdir=args.prometheus_dir, port=args.prometheus_port, processes=processes)
    api = KubeApi(args.kubeconfig)
    kubelet = LocalKubelet(api, args.namespace, processes, prometheus).start()
    traffic = TrafficGenerator(kubelet, rows_per_second=args.rows_per_second).start()
    print(f"agent: serving pods of namespace {args.namespace}", flush=True)
    try:
        stop.wait()
    finally:
        traffic.stop()
        kubelet.stop()
        processes.close()
        api.close()


if __name__ == "__main__":
    main()
