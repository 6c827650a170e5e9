"""Labelled traffic to whichever release serves: what a Service plus late ground truth would send.

Each tick picks one Ready pod at random (as a Service would) and posts a batch of iris rows
with their true labels to its server's feedback endpoint, so the server scores them and
its feedback counters move. Bounded: it runs until stopped, at a fixed rate, on 127.0.0.1.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

import httpx

from harness.kubelet import LocalKubelet
from harness.models import iris


class TrafficGenerator:
    def __init__(
        self, kubelet: LocalKubelet, *, rows_per_second: int = 100, ticks_per_second: int = 5
    ) -> None:
        self.kubelet = kubelet
        self.batch = max(1, rows_per_second // ticks_per_second)
        self.period = 1.0 / ticks_per_second
        self.sent: Counter[str] = Counter()  # labelled rows accepted, per version
        self.failures: Counter[str] = Counter()
        self._rng = random.Random(7)
        self._features, self._labels = iris()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> TrafficGenerator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.wait(self.period):
                serving = self.kubelet.serving()
                if not serving:
                    continue
                server = self._rng.choice(serving)
                rows = [self._rng.randrange(len(self._labels)) for _ in range(self.batch)]
                body = {
                    "instances": [self._features[i].tolist() for i in rows],
                    "labels": [int(self._labels[i]) for i in rows],
                }
                try:
                    response = client.post(f"{server.url}/v2/models/{server.key.name}/feedback", json=body)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                (self.sent if ok else self.failures)[server.key.version] += self.batch if ok else 1
