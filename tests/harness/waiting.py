"""Wait-for-condition helpers: tests poll a real state instead of sleeping blindly."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold in time; the message says what was last seen."""


def wait_for(
    condition: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Poll `condition` until it returns a truthy value and return that value.

    Exceptions raised by `condition` count as "not yet" and the last one is reported.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = condition()
            if result:
                return result
            last = result
        except Exception as error:  # noqa: BLE001 - reported below if the wait fails
            last = error
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)
