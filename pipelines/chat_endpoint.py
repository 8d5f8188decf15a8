"""An OpenAI-compatible chat endpoint: POST {url}/chat/completions.

Two kinds of failure, kept apart: a problem with one item (the server refuses this request,
HTTP 400/413/422, or sends a reply that is not a chat completion) is that item's EndpointError
and gets quarantined; a problem with the endpoint (it cannot be reached, refuses the key,
does not know the path or model, or keeps failing after the retries) is EndpointUnavailable
and stops the job, so nothing is recorded as done that was never answered.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import urllib3
from urllib3.util import Retry, Timeout

log = logging.getLogger(__name__)

# Statuses that say "this request", not "this endpoint": the item is quarantined.
ITEM_STATUSES = frozenset({400, 413, 422})
# Worth another try, after a backoff (urllib3 honours Retry-After on them).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class EndpointError(Exception):
    """One item's request or reply is bad; `reason` is its quarantine reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EndpointUnavailable(RuntimeError):
    """The endpoint itself failed (unreachable, auth, wrong path or model, or still failing
    after the retries): the job stops."""


@dataclass
class ChatClient:
    """POST {url}/chat/completions of an OpenAI-compatible server, through urllib3's
    connection pool and Retry: connection errors, timeouts, 429 and 5xx are retried up to
    `retries` times with urllib3's exponential backoff (the first retry at once, then
    backoff, 2 * backoff, ... seconds, at most max_backoff; Retry-After is honoured)."""

    url: str
    model: str
    api_key: str = ""
    timeout: float = 300.0
    retries: int = 4
    backoff: float = 2.0
    max_backoff: float = 60.0
    temperature: float = 0.7
    max_tokens: int = 8192
    _pool: urllib3.PoolManager = field(init=False, repr=False)

    def __post_init__(self) -> None:
        retry = Retry(total=self.retries, connect=self.retries, read=self.retries,
                      status=self.retries, status_forcelist=RETRY_STATUSES,
                      allowed_methods=None,  # POST too: a completion has no side effects
                      backoff_factor=self.backoff / 2, backoff_max=self.max_backoff,
                      raise_on_status=False)
        self._pool = urllib3.PoolManager(maxsize=64, block=False, retries=retry,
                                         timeout=Timeout(total=self.timeout))

    @property
    def endpoint(self) -> str:
        return f"{self.url.rstrip('/')}/chat/completions"

    def complete(self, prompt: str) -> str:
        body = json.dumps({"model": self.model, "temperature": self.temperature,
                           "max_tokens": self.max_tokens,
                           "messages": [{"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            response = self._pool.request("POST", self.endpoint, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as e:  # MaxRetryError: connection, timeout
            raise EndpointUnavailable(f"chat endpoint {self.endpoint} unreachable after "
                                      f"{self.retries} retries: {e}") from e
        if response.status in ITEM_STATUSES:
            raise EndpointError(f"http_{response.status}")
        if response.status != 200:
            hint = {401: "is the API key right (endpoint.api_key_env)?",
                    403: "does the API key have access to this model?",
                    404: "is endpoint.url the /v1 base and endpoint.model served there?"}.get(
                response.status, f"still failing after {self.retries} retries")
            raise EndpointUnavailable(
                f"chat endpoint {self.endpoint} answered HTTP {response.status} "
                f"({response.data[:200].decode(errors='replace')!r}): {hint}")
        try:
            content = json.loads(response.data)["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as e:
            raise EndpointError("bad_response") from e
        if not isinstance(content, str):
            raise EndpointError("bad_response")
        return content
