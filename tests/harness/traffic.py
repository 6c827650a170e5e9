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

from harness.kubelet import LocalKubelet, RunningServer
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
                    response = client.post(
                        f"{server.url}/v2/models/{server.key.name}/feedback",
                        json=body,
                        headers=server.feedback_headers,
                    )
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                (self.sent if ok else self.failures)[server.key.version] += self.batch if ok else 1


class ControlledTraffic:
    """Labels that agree with the served model at a chosen rate: a model of known true accuracy.

    Each row's label is the model's own prediction with probability `accuracy[name]` and another
    class otherwise, so the server's scored labels are a Bernoulli stream at exactly that
    accuracy, whatever the model file. `predictions` are the model's answers for the iris rows
    (every version of these ModelDeployments serves the same file). `accuracy` may be changed
    while it runs (a drift), per name or per "name@version". Bounded: a fixed rate on 127.0.0.1 until stopped.
    """

    def __init__(
        self,
        kubelet: LocalKubelet,
        predictions: list[int],
        accuracy: dict[str, float],
        *,
        labels_per_second: int = 10,
        ticks_per_second: int = 5,
    ) -> None:
        self.kubelet = kubelet
        self.accuracy = dict(accuracy)
        self.batch = max(1, labels_per_second // ticks_per_second)
        self.period = 1.0 / ticks_per_second
        self.sent: Counter[tuple[str, str]] = Counter()  # labels accepted, per (name, version)
        self.agreed: Counter[tuple[str, str]] = Counter()  # of those, equal to the prediction
        self.failures: Counter[str] = Counter()
        self._predictions = predictions
        self._features, _ = iris()
        self._rng = random.Random(11)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="controlled-traffic", daemon=True)

    def start(self) -> ControlledTraffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.wait(self.period):
                serving = self.kubelet.serving()
                for name in {key.split("@")[0] for key in list(self.accuracy)}:
                    candidates = [server for server in serving if server.key.name == name]
                    if candidates:
                        server = self._rng.choice(candidates)
                        self._post(client, server, self.accuracy_of(name, server.key.version))

    def accuracy_of(self, name: str, version: str) -> float:
        """`accuracy["name@version"]` when set (a drift of one version), else `accuracy["name"]`."""
        return self.accuracy.get(f"{name}@{version}", self.accuracy.get(name, 1.0))

    def _post(self, client: httpx.Client, server: RunningServer, accuracy: float) -> None:
        rows = [self._rng.randrange(len(self._predictions)) for _ in range(self.batch)]
        agree = [self._rng.random() < accuracy for _ in rows]
        labels = [
            self._predictions[i] if same else (self._predictions[i] + 1 + self._rng.randrange(2)) % 3
            for i, same in zip(rows, agree, strict=True)
        ]
        body = {"instances": [self._features[i].tolist() for i in rows], "labels": labels}
        try:
            response = client.post(
                f"{server.url}/v2/models/{server.key.name}/feedback",
                json=body,
                headers=server.feedback_headers,
            )
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        key = (server.key.name, server.key.version)
        if ok:
            self.sent[key] += len(rows)
            self.agreed[key] += sum(agree)
        else:
            self.failures[server.key.name] += 1
