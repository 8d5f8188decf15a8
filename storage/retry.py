"""Retries of whole-object operations across an outage of the object store (or an https
server): bounded attempts with exponential backoff, then an error naming the URI.

Why by hand: the libraries retry single requests for milliseconds (pyarrow exposes no backoff
setting at all), while an endpoint that restarts takes seconds, and a long job must not die of
it. The number of attempts is the S3 policy's (`storage.s3.attempts()`, MIMIR_S3_RETRIES).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from storage import s3

log = logging.getLogger(__name__)

T = TypeVar("T")

S3_BACKOFF_S = 0.5  # wait before the 2nd attempt; doubles each time, capped at S3_MAX_BACKOFF_S
S3_MAX_BACKOFF_S = 8.0
S3_MAX_TOTAL_S = 120.0  # no new attempt starts after this long


def with_retries(action: str, uri: str, fn: Callable[[], T],
                 permanent: tuple[type[BaseException], ...] = (FileNotFoundError,)) -> T:
    """fn(), retried on OSError (network and server faults) with exponential backoff, at most
    `s3.attempts()` times and S3_MAX_TOTAL_S seconds. `permanent` errors (a missing object is
    an answer, not a fault) are raised at once."""
    attempts, start, attempt = s3.attempts(), time.monotonic(), 1
    while True:
        try:
            return fn()
        except permanent:
            raise
        except OSError as e:
            wait = min(S3_BACKOFF_S * 2 ** (attempt - 1), S3_MAX_BACKOFF_S)
            elapsed = time.monotonic() - start
            if attempt >= attempts or elapsed + wait > S3_MAX_TOTAL_S:
                raise OSError(f"{action} {uri} failed after {attempt} attempts in "
                              f"{elapsed:.1f} s: {e}") from e
            log.warning("%s %s failed (attempt %d of %d), retrying in %.1f s: %s", action, uri,
                        attempt, attempts, wait, e)
            time.sleep(wait)
            attempt += 1
