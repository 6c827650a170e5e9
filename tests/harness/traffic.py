"""Labelled traffic to whichever release serves: what a Service plus late ground truth would send.

Each tick picks one Ready pod at random (as a Service would) and posts a batch of iris rows
with their true labels to its server's feedback endpoint, so the server scores them and
its feedback counters move. Bounded: it runs until stopped, at a fixed rate, on 127.0.0.1.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Self

import httpx

from harness.kubelet import LocalKubelet, RunningServer
from harness.models import iris


class _Ticker:
    """A daemon thread that calls `_tick` with one HTTP client at a fixed period until stopped,
    with the iris rows and a seeded random source to draw requests from."""

    def __init__(self, *, period: float, seed: int) -> None:
        self.period = period
        self._features, self._labels = iris()
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.wait(self.period):
                self._tick(client)

    def _tick(self, client: httpx.Client) -> None:
        raise NotImplementedError


class _LabelPoster(_Ticker):
    """Posts labelled rows to the model servers the stand-in kubelet runs, at a fixed rate."""

    def __init__(self, kubelet: LocalKubelet, *, per_second: int, ticks_per_second: int, seed: int) -> None:
        super().__init__(period=1.0 / ticks_per_second, seed=seed)
        self.kubelet = kubelet
        self.batch = max(1, per_second // ticks_per_second)

    def _tick(self, client: httpx.Client) -> None:
        self._post_to(client, self.kubelet.serving())

    def _post_to(self, client: httpx.Client, serving: list[RunningServer]) -> None:
        raise NotImplementedError

    def _post(self, client: httpx.Client, server: RunningServer, rows: list[int], labels: list[int]) -> bool:
        """Post iris `rows` with `labels` to `server`'s feedback endpoint; whether it took them."""
        body = {"instances": [self._features[i].tolist() for i in rows], "labels": labels}
        try:
            response = client.post(
                f"{server.url}/v2/models/{server.key.name}/feedback",
                json=body,
                headers=server.feedback_headers,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200


class TrafficGenerator(_LabelPoster):
    def __init__(
        self, kubelet: LocalKubelet, *, rows_per_second: int = 100, ticks_per_second: int = 5
    ) -> None:
        super().__init__(kubelet, per_second=rows_per_second, ticks_per_second=ticks_per_second, seed=7)
        self.sent: Counter[str] = Counter()  # labelled rows accepted, per version
        self.failures: Counter[str] = Counter()

    def _post_to(self, client: httpx.Client, serving: list[RunningServer]) -> None:
        if not serving:
            return
        server = self._rng.choice(serving)
        rows = [self._rng.randrange(len(self._labels)) for _ in range(self.batch)]
        ok = self._post(client, server, rows, [int(self._labels[i]) for i in rows])
        (self.sent if ok else self.failures)[server.key.version] += self.batch if ok else 1


class ControlledTraffic(_LabelPoster):
    """Labels that agree with the served model at a chosen rate: a model of known true accuracy.

    Each row's label is the model's own prediction with probability `accuracy[name]` and another
    class otherwise, so the server's scored labels are a Bernoulli stream at exactly that
    accuracy, whatever the model file. `predictions` are the model's answers for the iris rows
    (every version of these ModelDeployments serves the same file). `accuracy` may be changed
    while it runs (a drift), per name or per "name@version". Bounded: a fixed rate on 127.0.0.1
    until stopped.
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
        super().__init__(kubelet, per_second=labels_per_second, ticks_per_second=ticks_per_second, seed=11)
        self.accuracy = dict(accuracy)
        self.sent: Counter[tuple[str, str]] = Counter()  # labels accepted, per (name, version)
        self.agreed: Counter[tuple[str, str]] = Counter()  # of those, equal to the prediction
        self.failures: Counter[str] = Counter()
        self._predictions = predictions

    def accuracy_of(self, name: str, version: str) -> float:
        """`accuracy["name@version"]` when set (a drift of one version), else `accuracy["name"]`."""
        return self.accuracy.get(f"{name}@{version}", self.accuracy.get(name, 1.0))

    def _post_to(self, client: httpx.Client, serving: list[RunningServer]) -> None:
        for name in {key.split("@")[0] for key in list(self.accuracy)}:
            candidates = [server for server in serving if server.key.name == name]
            if candidates:
                self._post_at_accuracy(client, self._rng.choice(candidates))

    def _post_at_accuracy(self, client: httpx.Client, server: RunningServer) -> None:
        accuracy = self.accuracy_of(server.key.name, server.key.version)
        rows = [self._rng.randrange(len(self._predictions)) for _ in range(self.batch)]
        agree = [self._rng.random() < accuracy for _ in rows]
        labels = [
            self._predictions[i] if same else (self._predictions[i] + 1 + self._rng.randrange(2)) % 3
            for i, same in zip(rows, agree, strict=True)
        ]
        key = (server.key.name, server.key.version)
        if self._post(client, server, rows, labels):
            self.sent[key] += len(rows)
            self.agreed[key] += sum(agree)
        else:
            self.failures[server.key.name] += 1


class ServiceTraffic(_Ticker):
    """What users send to a model's Service: inference, and labelled feedback, at a steady rate.

    Every request goes to one URL (the Service's ClusterIP; kube-proxy picks the pod) over one
    keep-alive connection pool, as a typical client does, without retries: any request that
    does not get a 200 is a failure, recorded with its time and cause. Each answer names the
    version that gave it. Bounded: a fixed rate until stopped.
    """

    def __init__(self, url: str, model: str, token: str, *, per_second: int = 20, seed: int = 5) -> None:
        super().__init__(period=2.0 / per_second, seed=seed)  # an inference and a feedback per tick
        self.url = url.rstrip("/")
        self.model = model
        self.headers = {"Authorization": f"Bearer {token}"}
        self.answered: Counter[tuple[str, str]] = Counter()  # (endpoint, version) -> 200s
        self.failures: list[str] = []

    @property
    def requests(self) -> int:
        return sum(self.answered.values()) + len(self.failures)

    def versions(self, endpoint: str = "infer") -> dict[str, int]:
        return {version: n for (kind, version), n in sorted(self.answered.items()) if kind == endpoint}

    def _tick(self, client: httpx.Client) -> None:
        rows = [self._rng.randrange(len(self._labels)) for _ in range(4)]
        instances = [self._features[i].tolist() for i in rows]
        v2_input = {"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": instances}
        self._send(client, "infer", {"inputs": [v2_input]})
        labels = [int(self._labels[i]) for i in rows]
        self._send(client, "feedback", {"instances": instances, "labels": labels})

    def _send(self, client: httpx.Client, endpoint: str, body: dict[str, object]) -> None:
        try:
            response = client.post(
                f"{self.url}/v2/models/{self.model}/{endpoint}", json=body, headers=self.headers
            )
        except httpx.HTTPError as error:
            self.failures.append(f"{time.strftime('%H:%M:%S')} {endpoint}: {type(error).__name__}: {error}")
            return
        if response.status_code != 200:
            self.failures.append(
                f"{time.strftime('%H:%M:%S')} {endpoint}: {response.status_code} {response.text[:200]}"
            )
            return
        self.answered[(endpoint, str(response.json().get("model_version")))] += 1


class UserTraffic(_Ticker):
    """Users of one ModelDeployment, routed as its Service would route them, with late labels.

    Each tick sends one inference (4 iris rows) to a Ready pod that the ModelDeployment's Service
    selects, picked uniformly at random as kube-proxy does (`LocalKubelet.serving`: a shadow
    candidate's pods are never among them, a canary's are), then posts the rows' true labels by
    the answer's id to the server that answered (labels that arrive later; a stable server
    forwards them to a shadow). `answers` logs the version of every answered inference in order:
    the count of requests each version answered. Bounded: a fixed rate on 127.0.0.1 until stopped.
    """

    def __init__(self, kubelet: LocalKubelet, model: str, *, per_second: int = 20, seed: int = 13) -> None:
        super().__init__(period=1.0 / per_second, seed=seed)
        self.kubelet = kubelet
        self.model = model
        self.answers: list[str] = []  # the version that answered each inference, in order
        self.failures: list[str] = []

    def answered(self, start: int = 0, end: int | None = None) -> Counter[str]:
        """Inferences answered per version, over `answers[start:end]`."""
        return Counter(self.answers[start:end])

    def _tick(self, client: httpx.Client) -> None:
        serving = [server for server in self.kubelet.serving() if server.key.name == self.model]
        if not serving:
            return
        server = self._rng.choice(serving)
        rows = [self._rng.randrange(len(self._labels)) for _ in range(4)]
        instances = [self._features[i].tolist() for i in rows]
        v2_input = {"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": instances}
        try:
            answer = client.post(f"{server.url}/v2/models/{self.model}/infer", json={"inputs": [v2_input]})
            if answer.status_code != 200:
                self.failures.append(f"infer: {answer.status_code} {answer.text[:200]}")
                return
            document = answer.json()
            self.answers.append(str(document.get("model_version")))
            labels = {"id": document["id"], "labels": [int(self._labels[i]) for i in rows]}
            posted = client.post(
                f"{server.url}/v2/models/{self.model}/feedback", json=labels, headers=server.feedback_headers
            )
            if posted.status_code != 200:
                self.failures.append(f"feedback: {posted.status_code} {posted.text[:200]}")
        except httpx.HTTPError as error:
            self.failures.append(f"{type(error).__name__}: {error}")
