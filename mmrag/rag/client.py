"""A small OpenAI-compatible chat-completions client on the standard library (urllib).

One wire format serves OpenAI, vLLM, Ollama and the llama.cpp server. Transient failures (429, 5xx,
timeouts, refused connections) are retried with exponential backoff and jitter, honouring
Retry-After; a stream is never retried once text has been handed out. Every failure raises an
LLMError subclass whose message names the endpoint and what to check.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mmrag.errors import MMRagError

from .config import HOW_TO_CONFIGURE, LLMCfg, url_hint, url_setting

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class LLMError(MMRagError):
    """The language model endpoint failed; the message names the endpoint and what to check."""

    def __init__(self, message: str, endpoint: str = "", status: int | None = None):
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status


class LLMNotConfiguredError(LLMError):
    """No endpoint was configured and a call was asked for anyway."""


class LLMAuthError(LLMError):
    """401/403: the key is missing, wrong, or not allowed to use this model."""


class LLMNotFoundError(LLMError):
    """404: wrong base URL (often a missing /v1) or a model the server does not have."""


class LLMRateLimitError(LLMError):
    """429 after every retry, or a Retry-After longer than the client is willing to wait."""

    def __init__(self, message: str, endpoint: str = "", retry_after: float | None = None):
        super().__init__(message, endpoint, 429)
        self.retry_after = retry_after


class LLMTimeoutError(LLMError):
    """No answer within the timeout, on every try."""


class LLMConnectionError(LLMError):
    """The endpoint could not be reached (refused, DNS, TLS), on every try."""


class LLMServerError(LLMError):
    """A 5xx or other unexpected status, or a reply that is not the chat-completions format."""


@dataclass
class ChatResult:
    """The end of a completion: full text, why it stopped, token usage when the server reports it."""

    text: str
    finish_reason: str | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # the non-streaming response body


class _Retry(Exception):
    """A transient failure: try again after `wait` seconds (None: the client's own backoff)."""

    def __init__(self, error: LLMError, wait: float | None = None):
        self.error = error
        self.wait = wait


class ChatClient:
    """Calls one endpoint. `sleep` is injectable so tests can check the backoff without waiting."""

    def __init__(self, cfg: LLMCfg, *, sleep: Callable[[float], None] = time.sleep):
        if not cfg.configured:
            raise LLMNotConfiguredError(f"No language model endpoint configured: {HOW_TO_CONFIGURE}")
        self.cfg = cfg
        self.url = cfg.endpoint
        self.sleep = sleep
        self.attempts = 0  # tries made by the last call, for logs and tests
        host = urllib.parse.urlsplit(self.url).hostname or ""
        # a proxy from the environment must not swallow calls to a model server on this machine
        handlers = [urllib.request.ProxyHandler({})] if _is_local(host) else []
        self._opener = urllib.request.build_opener(*handlers)

    def complete(self, body: dict[str, Any]) -> ChatResult:
        """One non-streaming completion."""
        body = {**body, "stream": False}
        resp = self._with_retries(body)
        with resp:
            data = _json_or_raise(resp.read(), self.url)
        return _result_from_body(data, self.url)

    def stream(self, body: dict[str, Any]) -> Iterator[str | ChatResult]:
        """Yield text deltas as they arrive, then one ChatResult with the whole text."""
        body = {**body, "stream": True}
        resp = self._with_retries(body)
        parts: list[str] = []
        finish = model = usage = None
        with resp:
            if "application/json" in (resp.headers.get("Content-Type") or ""):
                # a server that ignores "stream": answer in one piece
                result = _result_from_body(_json_or_raise(resp.read(), self.url), self.url)
                if result.text:
                    yield result.text
                yield result
                return
            try:
                for chunk in _sse_events(resp):
                    if chunk.get("error"):
                        raise LLMServerError(
                            f"{self.url} reported an error mid-stream: {_error_text(chunk)}", self.url
                        )
                    model = chunk.get("model") or model
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        if choice.get("index", 0) != 0:
                            continue
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            parts.append(delta)
                            yield delta
                        finish = choice.get("finish_reason") or finish
            except TimeoutError as e:
                raise LLMTimeoutError(
                    f"{self.url} stopped sending for {self.cfg.timeout:g}s mid-answer; "
                    "raise MMRAG_LLM_TIMEOUT for slow models",
                    self.url,
                ) from e
            except (ConnectionError, OSError) as e:
                raise LLMConnectionError(f"Connection to {self.url} broke mid-answer: {e}", self.url) from e
        yield ChatResult("".join(parts), finish, model, usage)

    def _with_retries(self, body: dict[str, Any]):
        """Open the request, retrying transient failures; returns the open response."""
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.attempts = 0
        for attempt in range(self.cfg.max_retries + 1):
            self.attempts += 1
            try:
                return self._open(payload, body)
            except _Retry as r:
                if attempt == self.cfg.max_retries:
                    raise r.error from None
                wait = r.wait if r.wait is not None else self._backoff(attempt)
                if wait > self.cfg.max_backoff:
                    raise r.error from None
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        base = self.cfg.backoff * (2**attempt)
        return min(self.cfg.max_backoff, base * (1 + 0.25 * random.random()))

    def _open(self, payload: bytes, body: dict[str, Any]):
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if body.get("stream") else "application/json",
            "User-Agent": "mmrag",
        }
        if self.cfg.api_key:
            headers["Authorization"] = f"Bearer {self.cfg.api_key}"
        req = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
        try:
            return self._opener.open(req, timeout=self.cfg.timeout)
        except urllib.error.HTTPError as e:
            raise self._http_error(e, body) from None
        except TimeoutError as e:
            raise _Retry(
                LLMTimeoutError(
                    f"{self.url} did not answer within {self.cfg.timeout:g}s on {self.attempts} "
                    "tries; is the server overloaded or the model still loading? Raise MMRAG_LLM_TIMEOUT",
                    self.url,
                )
            ) from e
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, TimeoutError):
                raise _Retry(
                    LLMTimeoutError(
                        f"{self.url} did not answer within {self.cfg.timeout:g}s on {self.attempts} tries",
                        self.url,
                    )
                ) from e
            raise _Retry(
                LLMConnectionError(
                    f"Cannot reach {self.url} ({reason}) after {self.attempts} tries: "
                    + url_hint(self.cfg.base_url),
                    self.url,
                )
            ) from e
        except (ConnectionError, OSError) as e:  # reset or closed before the status line
            raise _Retry(
                LLMConnectionError(
                    f"Connection to {self.url} failed ({e}) after {self.attempts} tries", self.url
                )
            ) from e

    def _http_error(self, e: urllib.error.HTTPError, body: dict[str, Any]) -> LLMError | _Retry:
        try:
            detail = _error_text(json.loads(e.read() or b"{}"))
        except (ValueError, OSError):
            detail = ""
        finally:
            e.close()
        said = f": {detail}" if detail else ""
        code, url, model = e.code, self.url, body.get("model")
        if code in (401, 403):
            return LLMAuthError(
                f"{code} from {url}{said}. Check MMRAG_LLM_API_KEY (or OPENAI_API_KEY): "
                + ("it is not set" if not self.cfg.api_key else "the key is wrong, expired, or lacks access"),
                url,
                code,
            )
        if code == 404:
            return LLMNotFoundError(
                f"404 from {url}{said}. Check that {_url_var(self.cfg.base_url)} ends in /v1 (e.g. "
                f"http://localhost:11434/v1) and that the server has the model {model!r} (Ollama: `ollama pull {model}`; "
                "vLLM: the name given to --served-model-name or the model path)",
                url,
                code,
            )
        if code in RETRY_STATUS:
            wait = _retry_after(e.headers.get("Retry-After"))
            if code == 429:
                err: LLMError = LLMRateLimitError(
                    f"429 Too Many Requests from {url}{said} after {self.attempts} tries"
                    + (f"; the server asks to wait {wait:g}s" if wait is not None else "")
                    + ". Wait, lower the request rate, or check the account's quota",
                    url,
                    wait,
                )
            else:
                err = LLMServerError(f"{code} from {url}{said} after {self.attempts} tries", url, code)
            return _Retry(err, wait)
        return LLMServerError(f"{code} from {url}{said}", url, code)


def _url_var(base_url: str | None) -> str:
    setting = url_setting(base_url)
    return (
        "the base URL (OpenAI's, as only OPENAI_API_KEY is set)" if setting == "OPENAI_API_KEY" else setting
    )


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, from either of its two forms (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_text(data: Any) -> str:
    """The message of an OpenAI-style {"error": {...}} body, or of a plain {"error": "..."} one."""
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        err = err.get("message") or json.dumps(err)
    return str(err or data.get("detail") or data.get("message") or "")[:300] if isinstance(data, dict) else ""


def _json_or_raise(raw: bytes, url: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise LLMServerError(f"{url} answered with something that is not JSON: {raw[:200]!r}", url) from e
    if not isinstance(data, dict):
        raise LLMServerError(f"{url} answered with JSON that is not an object: {raw[:200]!r}", url)
    return data


def _result_from_body(data: dict[str, Any], url: str) -> ChatResult:
    try:
        choice = data["choices"][0]
        content = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise LLMServerError(
            f"{url} answered without choices[0].message: {json.dumps(data)[:200]}", url
        ) from e
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ChatResult(str(content), choice.get("finish_reason"), data.get("model"), data.get("usage"), data)


def _sse_events(resp) -> Iterator[dict[str, Any]]:
    """Parse server-sent events: `data:` lines joined per event, blank line ends it, [DONE] ends all."""
    data: list[str] = []
    for raw in resp:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line.startswith(":"):  # comment / keep-alive
            continue
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
            continue
        if line or not data:
            continue  # other fields (event:, id:, retry:) carry nothing for chat completions
        payload, data = "\n".join(data), []
        if payload.strip() == "[DONE]":
            return
        yield _event_json(payload)
    if data and "\n".join(data).strip() != "[DONE]":
        yield _event_json("\n".join(data))


def _event_json(payload: str) -> dict[str, Any]:
    try:
        chunk = json.loads(payload)
    except ValueError as e:
        raise LLMServerError(f"Unreadable stream chunk: {payload[:200]!r}") from e
    return chunk if isinstance(chunk, dict) else {}
