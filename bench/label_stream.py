"""A label-stream exporter: the model servers' feedback counters for many models, without the servers.

`make bench-scale` needs the series a thousand model servers would expose, not a thousand
processes. For each registered (model, version) this serves `vigil_model_feedback_total` and
`vigil_model_feedback_correct_total` (docs/metrics.md, the names the operator's built-in query
reads) growing at `rate` labelled predictions per second from the moment it was registered,
`accuracy` of them correct. Values are computed at scrape time from the clock, so any number of
models costs one pass over a table per scrape. Prometheus adds `namespace` as a target label (as
pod discovery would), so one exporter serves one namespace.

The interface (`LabelStream.set`, `.start`, `.stop`, `.port`) is all `bench/scale.py` uses.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

FEEDBACK_TOTAL = "vigil_model_feedback"  # prometheus_client appends _total
FEEDBACK_CORRECT = "vigil_model_feedback_correct"
LABELS = ("model", "version", "pod")


@dataclass
class Stream:
    """One version's labels: from `since` at `rate` per second; before `changed`, `earlier_*` counts."""

    accuracy: float
    rate: float
    since: float
    earlier_total: float = 0.0
    earlier_correct: float = 0.0

    def counts(self, now: float) -> tuple[float, float]:
        """Whole labelled predictions and correct ones so far (counters never go down)."""
        new = max(0.0, now - self.since) * self.rate
        total = math.floor(self.earlier_total + new)
        correct = min(total, math.floor(self.earlier_correct + new * self.accuracy))
        return float(total), float(correct)


class _Counters(Collector):
    def __init__(self, stream: LabelStream) -> None:
        self.stream = stream

    def collect(self) -> Iterator[CounterMetricFamily]:
        total = CounterMetricFamily(FEEDBACK_TOTAL, "Labelled predictions scored", labels=LABELS)
        correct = CounterMetricFamily(FEEDBACK_CORRECT, "Labelled predictions scored correct", labels=LABELS)
        now = time.time()
        for (model, version), stream in self.stream.snapshot():
            seen, right = stream.counts(now)
            labels = [model, version, f"{model}-{version}"]
            total.add_metric(labels, seen)
            correct.add_metric(labels, right)
        yield total
        yield correct


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape is noise
        pass


class LabelStream:
    """The exporter: `set` what each model version's labels look like, Prometheus scrapes `port`."""

    def __init__(self, rate: float = 20.0) -> None:
        self.rate = rate
        self._streams: dict[tuple[str, str], Stream] = {}
        self._lock = threading.Lock()
        self._server: WSGIServer | None = None
        self.port = 0

    def set(self, model: str, version: str, accuracy: float) -> None:
        """Labels of `version` of `model` from now on are right with probability `accuracy`."""
        now = time.time()
        with self._lock:
            old = self._streams.get((model, version))
            if old is None:
                self._streams[(model, version)] = Stream(accuracy, self.rate, now)
                return
            total, correct = old.counts(now)
            self._streams[(model, version)] = Stream(accuracy, self.rate, now, total, correct)

    def snapshot(self) -> list[tuple[tuple[str, str], Stream]]:
        with self._lock:
            return list(self._streams.items())

    def start(self, host: str = "127.0.0.1", port: int = 0) -> LabelStream:
        registry = CollectorRegistry()
        registry.register(_Counters(self))
        self._server = make_server(host, port, make_wsgi_app(registry), handler_class=_QuietHandler)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, name="label-stream", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
