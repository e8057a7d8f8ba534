"""A small JSON-over-HTTPS client for cloud REST APIs (stdlib urllib only).

Every failure becomes a ProviderError with a stable kind:

- 401/403 -> ProviderAuth (hint: set the key with "GPU Workbench: Set Provider Credentials…")
- 404 -> NotFound
- 429 -> retried with exponential backoff honouring Retry-After, then ProviderRateLimited
- 5xx -> ProviderUnavailable (idempotent GETs are retried once)
- timeouts, refused or dropped connections -> ProviderUnavailable (GETs retried once, not
  after a timeout: that would double the wait)
- other 4xx -> ProviderRequest with the API's own error text (Linode `errors[].reason`,
  Lambda `error.message`); Lambda capacity/quota codes -> ProviderQuota
- non-JSON or non-object bodies -> ProviderResponse

The token (and any extra secret handed to a request, such as a generated root password)
never appears in a message, a log line or an exception: every text that leaves this module
goes through `redact`, which also catches a server echoing the token back.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from .base import Check, ProviderError, no_check

log = logging.getLogger("gpu_workbench.vms.http")

CREDENTIALS_COMMAND = "GPU Workbench: Set Provider Credentials…"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_BODY = 32 * 1024 * 1024
REDACTED = "[redacted]"

Sleep = Callable[[float], None]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would resend the Authorization header to wherever
    the Location points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def redact(text: str, secrets: Iterable[Optional[str]]) -> str:
    """`text` with every secret (of 4+ characters) replaced; also `Bearer <anything>`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    lowered = text.lower()
    start = lowered.find("bearer ")
    while start >= 0:
        end = start + len("bearer ")
        stop = end
        while stop < len(text) and not text[stop].isspace() and text[stop] not in "\"',;}":
            stop += 1
        if stop > end:
            text = text[:end] + REDACTED + text[stop:]
            lowered = text.lower()
        start = lowered.find("bearer ", end + len(REDACTED))
    return text


def api_error_text(body: Any) -> Optional[str]:
    """The human text of an API error body: Linode `errors[]` or Lambda `error`."""
    if not isinstance(body, dict):
        return None
    errors = body.get("errors")
    if isinstance(errors, list):
        parts: List[str] = []
        for item in errors:
            if isinstance(item, dict) and isinstance(item.get("reason"), str):
                field = item.get("field")
                reason = item["reason"]
                parts.append("%s: %s" % (field, reason) if isinstance(field, str) else reason)
        if parts:
            return "; ".join(parts)
    error = body.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        suggestion = error.get("suggestion")
        if isinstance(message, str):
            if isinstance(suggestion, str) and suggestion:
                return "%s (%s)" % (message, suggestion)
            return message
    if isinstance(error, str):
        return error
    return None


def api_error_code(body: Any) -> str:
    """Lambda's `error.code` (e.g. instance-operations/launch/insufficient-capacity) or ""."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return error["code"]
    return ""


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpClient:
    """Bearer-token JSON client bound to one API base URL.

    `rate_limit_retries` 429 retries are made, waiting Retry-After when the server gives one
    and `backoff` * 2**attempt (capped at `max_backoff`) otherwise; a Retry-After longer
    than `max_backoff` is not waited for (ProviderRateLimited at once). `sleep` is
    injectable for tests.
    """

    def __init__(
        self,
        base_url: str,
        token: Optional[str],
        *,
        provider: str,
        timeout: float = 30.0,
        rate_limit_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        retry_delay: float = 1.0,
        sleep: Sleep = time.sleep,
        user_agent: str = "gpu-workbench",
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        host = (parsed.hostname or "").lower()
        if parsed.scheme not in ("https", "http") or not host:
            raise ProviderError(
                "ProviderRequest",
                "%s API URL is not an http(s) URL: %s" % (provider, base_url),
                hint="Fix the provider's apiUrl setting.",
            )
        if parsed.scheme == "http" and host not in LOCAL_HOSTS:
            # A bearer token must not cross the network in clear text.
            raise ProviderError(
                "ProviderRequest",
                "%s API URL must use https: %s" % (provider, base_url),
                hint="Plain http is only allowed for localhost test servers.",
            )
        self.base_url = base_url.rstrip("/")
        self.token = token or ""
        self.provider = provider
        self.timeout = timeout
        self.rate_limit_retries = rate_limit_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_delay = retry_delay
        self.sleep = sleep
        self.user_agent = user_agent

    # ---- public ----

    def get(
        self,
        path: str,
        query: Optional[Mapping[str, Any]] = None,
        *,
        auth: bool = True,
        check: Check = no_check,
    ) -> Dict[str, Any]:
        return self.request("GET", path, query=query, auth=auth, check=check)

    def post(
        self,
        path: str,
        body: Optional[Any] = None,
        *,
        check: Check = no_check,
        backoff: Optional[float] = None,
        secrets: Iterable[str] = (),
    ) -> Dict[str, Any]:
        return self.request(
            "POST",
            path,
            body=body if body is not None else {},
            check=check,
            backoff=backoff,
            secrets=secrets,
        )

    def delete(self, path: str, *, check: Check = no_check) -> Dict[str, Any]:
        return self.request("DELETE", path, check=check)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Optional[Any] = None,
        query: Optional[Mapping[str, Any]] = None,
        auth: bool = True,
        check: Check = no_check,
        backoff: Optional[float] = None,
        secrets: Iterable[str] = (),
    ) -> Dict[str, Any]:
        """Send one request (with the retries above); the decoded JSON object it returns."""
        hidden = [self.token, *secrets]
        if auth and not self.token:
            raise self._auth_error("No %s credentials are set." % self.provider)
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: str(v) for k, v in query.items()})
        data = json.dumps(body).encode("utf-8") if body is not None else None
        idempotent = method == "GET"
        base = self.backoff if backoff is None else backoff
        rate_limited = 0
        retried = False
        while True:
            check()
            started = time.monotonic()
            try:
                status, headers, raw = self._send(method, url, data, auth)
            except _Transport as failure:
                log.debug(
                    "%s %s %s -> %s", self.provider, method, path, redact(failure.text, hidden)
                )
                if idempotent and not retried and not failure.timeout:
                    retried = True
                    self._wait(self.retry_delay, check)
                    continue
                raise ProviderError(
                    "ProviderUnavailable",
                    "%s did not answer: %s" % (self.provider, redact(failure.text, hidden)),
                    hint="Check the network connection and try again.",
                ) from None
            elapsed = time.monotonic() - started
            log.debug("%s %s %s -> %d (%.2f s)", self.provider, method, path, status, elapsed)
            if status == 429:
                after = parse_retry_after(headers.get("retry-after"))
                wait = after if after is not None else base * (2**rate_limited)
                too_long = after is not None and after > self.max_backoff
                if rate_limited >= self.rate_limit_retries or too_long:
                    raise ProviderError(
                        "ProviderRateLimited",
                        "%s is rate limiting requests (%s %s)" % (self.provider, method, path),
                        hint="Wait %s and try again."
                        % ("%d s" % max(1, round(after)) if after is not None else "a minute"),
                    )
                rate_limited += 1
                self._wait(min(wait, self.max_backoff), check)
                continue
            if status >= 500:
                if idempotent and not retried:
                    retried = True
                    self._wait(self.retry_delay, check)
                    continue
                raise ProviderError(
                    "ProviderUnavailable",
                    "%s answered HTTP %d to %s %s" % (self.provider, status, method, path),
                    hint="The provider has a problem; try again later.",
                    detail=self._text(raw, hidden),
                )
            return self._decode(status, raw, method, path, hidden)

    # ---- internals ----

    def _send(
        self, method: str, url: str, data: Optional[bytes], auth: bool
    ) -> Tuple[int, Dict[str, str], bytes]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = "Bearer " + self.token
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            # http(s) only: the scheme is checked in __init__.
            with _OPENER.open(request, timeout=self.timeout) as response:
                raw = response.read(MAX_BODY)
                return response.status, _lower(response.headers.items()), raw
        except urllib.error.HTTPError as error:
            try:
                raw = error.read(MAX_BODY)
            except (OSError, http.client.HTTPException):
                raw = b""
            return error.code, _lower(error.headers.items()) if error.headers else {}, raw
        except urllib.error.URLError as error:
            reason = error.reason
            timeout = isinstance(reason, (socket.timeout, TimeoutError))
            raise _Transport(
                "timed out after %g s" % self.timeout if timeout else str(reason), timeout
            ) from None
        except (socket.timeout, TimeoutError):
            raise _Transport("timed out after %g s" % self.timeout, True) from None
        except (OSError, http.client.HTTPException) as error:
            raise _Transport(str(error) or type(error).__name__, False) from None

    def _wait(self, seconds: float, check: Check) -> None:
        check()
        if seconds > 0:
            self.sleep(seconds)
        check()

    def _auth_error(self, message: str, detail: Optional[str] = None) -> ProviderError:
        return ProviderError(
            "ProviderAuth",
            message,
            hint='Set the %s key with "%s".' % (self.provider, CREDENTIALS_COMMAND),
            detail=detail,
        )

    def _text(self, raw: bytes, hidden: List[str]) -> Optional[str]:
        """The API's error text from a body (or its start), redacted; None if empty."""
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            body = None
        text = api_error_text(body)
        if text is None and raw:
            text = raw[:300].decode("utf-8", "replace").strip() or None
        return redact(text, hidden) if text else None

    def _decode(
        self, status: int, raw: bytes, method: str, path: str, hidden: List[str]
    ) -> Dict[str, Any]:
        if status in (401, 403):
            text = self._text(raw, hidden)
            raise self._auth_error(
                "%s rejected the credentials (HTTP %d)%s"
                % (self.provider, status, ": %s" % text if text else ""),
            )
        if status >= 400:
            try:
                body = json.loads(raw.decode("utf-8")) if raw else None
            except (UnicodeDecodeError, ValueError):
                body = None
            text = self._text(raw, hidden) or "HTTP %d" % status
            code = api_error_code(body)
            if status == 404:
                raise ProviderError(
                    "NotFound", "%s: not found (%s %s): %s" % (self.provider, method, path, text)
                )
            if "capacity" in code or "quota" in code or "limit" in code:
                raise ProviderError(
                    "ProviderQuota",
                    "%s cannot serve this now: %s" % (self.provider, text),
                    hint="Try another region or instance type, or try again later.",
                    detail=redact(code, hidden),
                )
            raise ProviderError(
                "ProviderRequest",
                "%s refused the request: %s" % (self.provider, text),
                detail="HTTP %d %s %s" % (status, method, path),
            )
        if status >= 300:
            raise ProviderError(
                "ProviderResponse",
                "%s answered HTTP %d to %s %s (redirects are not followed)"
                % (self.provider, status, method, path),
                hint="Check the provider's apiUrl setting.",
            )
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ProviderError(
                "ProviderResponse",
                "%s sent a response that is not JSON (%s %s)" % (self.provider, method, path),
                detail=redact(raw[:200].decode("utf-8", "replace"), hidden),
            ) from None
        if not isinstance(body, dict):
            raise ProviderError(
                "ProviderResponse",
                "%s sent an unexpected response (%s %s): not a JSON object"
                % (self.provider, method, path),
            )
        return body


def _lower(items: Iterable[Tuple[str, str]]) -> Dict[str, str]:
    return {key.lower(): value for key, value in items}


class _Transport(Exception):
    def __init__(self, text: str, timeout: bool) -> None:
        super().__init__(text)
        self.text = text
        self.timeout = timeout


def shape_error(provider: str, what: str) -> ProviderError:
    """A ProviderResponse for a body that parsed but has the wrong shape."""
    return ProviderError(
        "ProviderResponse",
        "%s sent an unexpected response: %s" % (provider, what),
        hint="The provider's API may have changed; please report this.",
    )


def field(obj: Any, name: str, kind: Any, provider: str, what: str, optional: bool = False) -> Any:
    """obj[name] checked against `kind` (a type or tuple); ProviderResponse otherwise."""
    if not isinstance(obj, dict):
        raise shape_error(provider, "%s is not an object" % what)
    value = obj.get(name)
    if value is None and optional:
        return None
    if kind in (int, float, (int, float)) and isinstance(value, bool):
        raise shape_error(provider, "%s.%s has the wrong type" % (what, name))
    if not isinstance(value, kind):
        raise shape_error(
            provider,
            "%s.%s is %s" % (what, name, "missing" if value is None else "of the wrong type"),
        )
    return value
