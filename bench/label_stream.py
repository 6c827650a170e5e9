"""A label stream for `make bench-scale`: the model servers' feedback metrics for N models at once.

A real Prometheus scrapes this one process instead of 1,000 model servers. It serves, for every
model and version, the series the operator's built-in query reads (names and labels as
`vigil_model_server.metrics` exposes them): `vigil_model_feedback_total`,
`vigil_model_feedback_correct_total`, `vigil_model_accuracy` and `vigil_model_predictions_total`,
with `model`, `version`, and the `namespace` and `pod` labels that pod discovery would set. Labels
arrive at a steady rate with an exact share of correct ones, so each model's accuracy is what the
command line says; one chosen model can breach (its accuracy drops) after a delay or on SIGUSR1.

    python bench/label_stream.py --port P --models N --namespace NS --accuracy 0.95

Flags:
  --port P                listen port (required); --host H, default 127.0.0.1
  --models N              how many models (required), named PREFIX0000, PREFIX0001, ...
  --prefix PREFIX         model name prefix (default "model-"); the ModelDeployments' names
  --digits D              zero padding of the index (default 4)
  --namespace NS          the `namespace` label of every series (required): the ModelDeployments'
  --versions V1,V2        versions of every model (default "v1"); each version is its own stream
  --accuracy A            steady share of correct labels, 0..1 (default 0.95)
  --labels-per-second R   labelled predictions per model and version per second (default 1)
  --tick S                how often the counters move, in seconds (default 1)
  --breach-model NAME     the model whose accuracy drops (default: none)
  --breach-version V      only this version of it breaches (default: every version)
  --breach-accuracy A     its accuracy once breached (default 0.5)
  --breach-after S        seconds from start to the breach (default: never by itself; SIGUSR1
                          starts it at once either way)

`vigil_label_stream_breach_started_seconds` (Unix time, 0 before) says when the breach began, so
the bench measures breach to rollback from the exporter's own clock. Scrape it with no
`namespace` target label (or `honor_labels: true`): the series carry their own `namespace`.

In process, `LabelStream` (`.set(model, version, accuracy)`, `.start()`, `.port`, `.stop()`) is
what `bench/scale.py` uses: counters computed from the clock at scrape time, models added and
changed while it runs, and `namespace` left to the scrape config (one exporter per namespace).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

POD = "label-stream"  # one process; `instance` (its address) tells several exporters apart
LABELS = ("namespace", "pod", "model", "version")


@dataclass
class Stream:
    """One model version's counters: `correct` is always floor(share of the labels since the last
    accuracy change), so the accuracy is exact at every scrape, not only on average."""

    model: str
    version: str
    accuracy: float
    total: float = 0.0
    correct: float = 0.0
    since_total: float = 0.0  # counts when the accuracy last changed
    since_correct: float = 0.0
    owed: float = 0.0  # labels of the rate not yet whole

    def advance(self, labels: float) -> None:
        self.owed += labels
        whole = math.floor(self.owed)
        self.owed -= whole
        self.total += whole
        self.correct = self.since_correct + math.floor((self.total - self.since_total) * self.accuracy)

    def change_accuracy(self, accuracy: float) -> None:
        self.since_total, self.since_correct = self.total, self.correct
        self.accuracy = accuracy


@dataclass
class TickedStreams:
    """The command line's streams, moved by `tick` and read by Prometheus through `collect`."""

    namespace: str
    streams: list[Stream]
    breach_started: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tick(self, labels_each: float) -> None:
        with self.lock:
            for stream in self.streams:
                stream.advance(labels_each)

    def breach(self, model: str, version: str | None, accuracy: float) -> None:
        """Drop the chosen model's accuracy now (once)."""
        with self.lock:
            if self.breach_started:
                return
            for stream in self.streams:
                if stream.model == model and version in (None, stream.version):
                    stream.change_accuracy(accuracy)
            self.breach_started = time.time()
        print(f"breach of {model} started at {self.breach_started:.3f}", flush=True)

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            rows = [(s.model, s.version, s.total, s.correct) for s in self.streams]
            breach_started = self.breach_started
        feedback = CounterMetricFamily(
            "vigil_model_feedback", "Labelled predictions scored against ground truth", labels=LABELS
        )
        correct = CounterMetricFamily(
            "vigil_model_feedback_correct", "Labelled predictions that were correct", labels=LABELS
        )
        accuracy = GaugeMetricFamily(
            "vigil_model_accuracy", "Share of correct labelled predictions", labels=LABELS
        )
        predictions = CounterMetricFamily("vigil_model_predictions", "Rows predicted", labels=LABELS)
        for model, version, total, right in rows:
            labels = [self.namespace, POD, model, version]
            feedback.add_metric(labels, total)
            correct.add_metric(labels, right)
            predictions.add_metric(labels, total)
            accuracy.add_metric(labels, right / total if total else 0.0)
        yield from (feedback, correct, accuracy, predictions)
        yield GaugeMetricFamily(
            "vigil_label_stream_breach_started_seconds",
            "Unix time the breach began, 0 before",
            value=breach_started,
        )


class _Registered(Collector):
    def __init__(self, stream: TickedStreams) -> None:
        self.stream = stream

    def collect(self) -> Iterator[Metric]:
        return self.stream.collect()


# --- In process, for bench/scale.py ---------------------------------------------------------
FEEDBACK_TOTAL = "vigil_model_feedback"  # prometheus_client appends _total
FEEDBACK_CORRECT = "vigil_model_feedback_correct"
RATE_LABELS = ("model", "version", "pod")


@dataclass
class RateStream:
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
        total = CounterMetricFamily(FEEDBACK_TOTAL, "Labelled predictions scored", labels=RATE_LABELS)
        correct = CounterMetricFamily(
            FEEDBACK_CORRECT, "Labelled predictions scored correct", labels=RATE_LABELS
        )
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
        self._streams: dict[tuple[str, str], RateStream] = {}
        self._lock = threading.Lock()
        self._server: WSGIServer | None = None
        self.port = 0

    def set(self, model: str, version: str, accuracy: float) -> None:
        """Labels of `version` of `model` from now on are right with probability `accuracy`."""
        now = time.time()
        with self._lock:
            old = self._streams.get((model, version))
            if old is None:
                self._streams[(model, version)] = RateStream(accuracy, self.rate, now)
                return
            total, correct = old.counts(now)
            self._streams[(model, version)] = RateStream(accuracy, self.rate, now, total, correct)

    def snapshot(self) -> list[tuple[tuple[str, str], RateStream]]:
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


def share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--models", type=int, required=True)
    parser.add_argument("--prefix", default="model-")
    parser.add_argument("--digits", type=int, default=4)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--versions", default="v1")
    parser.add_argument("--accuracy", type=share, default=0.95)
    parser.add_argument("--labels-per-second", type=positive, default=1.0)
    parser.add_argument("--tick", type=positive, default=1.0)
    parser.add_argument("--breach-model")
    parser.add_argument("--breach-version")
    parser.add_argument("--breach-accuracy", type=share, default=0.5)
    parser.add_argument("--breach-after", type=float)
    args = parser.parse_args(argv)
    if args.models < 1:
        parser.error("--models must be at least 1")
    return args


def model_names(count: int, prefix: str, digits: int) -> list[str]:
    return [f"{prefix}{index:0{digits}d}" for index in range(count)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    versions = [version for version in args.versions.split(",") if version]
    models = model_names(args.models, args.prefix, args.digits)
    if args.breach_model is not None and args.breach_model not in models:
        print(f"--breach-model {args.breach_model} is not one of the models", file=sys.stderr)
        return 2
    stream = TickedStreams(
        args.namespace, [Stream(model, version, args.accuracy) for model in models for version in versions]
    )
    REGISTRY.register(_Registered(stream))
    stop = threading.Event()

    def breach(*_: object) -> None:
        if args.breach_model is not None:
            stream.breach(args.breach_model, args.breach_version, args.breach_accuracy)

    signal.signal(signal.SIGUSR1, breach)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    start_http_server(args.port, addr=args.host)
    print(
        f"serving {len(stream.streams)} streams ({args.models} models x {len(versions)} versions) "
        f"on http://{args.host}:{args.port}/metrics",
        flush=True,
    )
    started = time.monotonic()
    next_tick = started
    try:
        while not stop.is_set():
            next_tick += args.tick
            stop.wait(max(0.0, next_tick - time.monotonic()))
            stream.tick(args.labels_per_second * args.tick)
            if args.breach_after is not None and time.monotonic() - started >= args.breach_after:
                breach()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
