"""Feeds a shadow candidate the copies a mirroring stable server would send it, from no stable server.

`bench/server.py` runs this, under `chrt --idle 0` like the candidate, in its control rounds: the candidate
then works as hard as when the stable server mirrors into it, but the stable server driven by wrk does not
mirror. On a machine whose cores wrk and the stable server already fill, the candidate's own CPU slows
the stable server even at idle priority (in a cluster it has pods of its own); with the same load on the
candidate in both arms, what differs is only the stable server's own cost of mirroring.

Usage: candidate_feeder.py URL REQUESTS_PER_SECOND TOKEN_FILE. Posts `POST_REQUESTS` single-row
requests per post, each under a new id (more ids than the candidate's feedback cache holds, so none is
known already), paced to the rate; on SIGTERM prints `FED <requests posted> <requests refused>`.
"""

from __future__ import annotations

import http.client
import secrets
import signal
import sys
import time
import urllib.parse
from pathlib import Path

import numpy as np

from vigil_model_server.mirror import MAX_REQUESTS_PER_POST
from vigil_model_server.protocol.mirror import MirrorDocumentWriter

POST_REQUESTS = MAX_REQUESTS_PER_POST  # what the stable server's mirror posts at this rate
DISTINCT_IDS = 131_072  # above the candidate's default FEEDBACK_CACHE_SIZE of 100,000 rows
ROW = [5.1, 3.5, 1.4, 0.2]
MODEL_NAME = "iris"
STABLE_VERSION = "1"


def documents() -> list[bytes]:
    """Mirror documents as the stable server writes them, each with ids of its own."""
    rows = np.array([ROW] * POST_REQUESTS)
    predictions = np.zeros(POST_REQUESTS, dtype=np.int64)
    built = []
    for _ in range(DISTINCT_IDS // POST_REQUESTS):
        writer = MirrorDocumentWriter(STABLE_VERSION)
        ids = [secrets.token_urlsafe(16) for _ in range(POST_REQUESTS)]
        writer.add(ids, [1] * POST_REQUESTS, rows, predictions)
        built.append(writer.document())
    return built


def main() -> None:
    url, rate, token_file = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
    parsed = urllib.parse.urlsplit(url)
    path = f"/v2/models/{MODEL_NAME}/mirror"
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {token_file.read_text().strip()}",
    }
    bodies = documents()
    posted = refused = turn = 0

    def stop(*_: object) -> None:
        print(f"FED {posted} {refused}", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port or 80, timeout=10)
    interval = POST_REQUESTS / rate
    due = time.monotonic()
    while True:
        connection.request("POST", path, body=bodies[turn % len(bodies)], headers=headers)
        response = connection.getresponse()
        response.read()
        turn += 1
        if response.status == 200:
            posted += POST_REQUESTS
        else:
            refused += POST_REQUESTS
        due += interval
        time.sleep(max(0.0, due - time.monotonic()))


if __name__ == "__main__":
    main()
