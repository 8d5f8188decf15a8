"""An OpenAI-compatible chat endpoint: POST {url}/chat/completions."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

log = logging.getLogger(__name__)


class EndpointError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ChatClient:
    """POST {url}/chat/completions of an OpenAI-compatible server. Timeouts, connection errors,
    429 and 5xx are retried up to `retries` times with exponential backoff (backoff * 2**n
    seconds, at most max_backoff); other HTTP errors fail at once."""

    url: str
    model: str
    api_key: str = ""
    timeout: float = 300.0
    retries: int = 4
    backoff: float = 2.0
    max_backoff: float = 60.0
    temperature: float = 0.7
    max_tokens: int = 8192

    def complete(self, prompt: str) -> str:
        body = json.dumps({"model": self.model, "temperature": self.temperature,
                           "max_tokens": self.max_tokens,
                           "messages": [{"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(f"{self.url.rstrip('/')}/chat/completions",
                                             data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read())
                return payload["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as e:
                reason = f"http_{e.code}"
                if e.code != 429 and e.code < 500:
                    raise EndpointError(reason) from e
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                reason = "connection_error"
                log.warning("endpoint %s: %s", self.url, e)
            except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
                raise EndpointError("bad_response") from e
            if attempt < self.retries:
                time.sleep(min(self.backoff * 2 ** attempt, self.max_backoff))
        raise EndpointError(reason)
