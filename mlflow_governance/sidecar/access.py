"""Who may call the sidecar, and for what: its route table and the check of each caller.

Every route but ``/health`` is a row of `ROUTES` naming its rule, checked in one place (the app's
``before_request`` hook) before any handler runs, the way MLflow's ``BEFORE_REQUEST_VALIDATORS``
work:

* `READ`: MLflow's per-model permission on the served model grants READ (READ, USE, EDIT and
  MANAGE all do; admins always): scoring, explanations, ``/status`` and ``/metrics`` (a Prometheus
  scraper gets a user of its own with READ);
* `FEEDBACK`: READ and the governance role ModelMonitor (or admin). True labels feed the quality
  monitor, which can turn the model red: only someone who could already reject the model's
  usability by hand may send them. A scoring client does not hold this by default;
* `CORRECT`: READ and the ModelOwner role (or admin): replace a label already given, with a reason;
* `PUBLIC`: ``/health`` only (liveness needs no credentials and says nothing about the model).

The users, passwords and permissions are the governance server's: the sidecar asks the server
(``GET /api/2.0/mlflow-governance/models/access``) with the caller's own ``Authorization`` header,
so the server's password check, lock-out and MLflow's permission decide, exactly as for its own
routes. A worker remembers an answer (success or a permission refusal, never a failed password)
for ``auth_cache_seconds`` under an HMAC of the header with a per-process key: a revoked user or
changed password is refused within that time. A caller address whose wrong credentials reach
``MLGOV_SIGNIN_MAX_FAILURES`` within ``MLGOV_SIGNIN_LOCKOUT_SECONDS`` gets 429 from the sidecar
itself before the server is asked again (so nobody can lock the sidecar's own address out of the
server by guessing through it). When the server cannot be asked, the request is refused with 503:
the sidecar fails closed.

``mlgov serve --no-auth`` (`NoAuthentication`) is local development only: refused against a
governance server, and every answer then carries `NO_AUTH_HEADER`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

PUBLIC = "PUBLIC"
READ = "READ"
FEEDBACK = "FEEDBACK"
CORRECT = "CORRECT"

#: (method, path) -> the rule checked before the handler. A route missing here is refused (403).
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/invocations"): READ,
    ("POST", "/explain"): READ,
    ("POST", "/feedback"): FEEDBACK,
    ("POST", "/feedback/correct"): CORRECT,
    ("GET", "/status"): READ,
    ("GET", "/metrics"): READ,
    ("GET", "/health"): PUBLIC,
}

NO_AUTH_HEADER = "X-MLGov-Authentication"
NO_AUTH_TEXT = "none: mlgov serve --no-auth (local development, nobody is authenticated)"
REALM = 'Basic realm="mlflow-governance sidecar", charset="UTF-8"'
ACCESS_PATH = "/api/2.0/mlflow-governance/models/access"
DEFAULT_CACHE_SECONDS = 2.0
SERVER_TIMEOUT_SECONDS = 5.0
CACHE_SIZE = 10_000
_SCHEMES = ("basic ", "bearer ")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller and what it may do on the served model (user None: --no-auth)."""

    user: str | None
    read: bool = False
    feedback: bool = False
    correct: bool = False

    def allows(self, rule: str) -> bool:
        if rule == PUBLIC:
            return True
        if rule == READ:
            return self.read
        if rule == FEEDBACK:
            return self.read and self.feedback
        if rule == CORRECT:
            return self.read and self.correct
        return False


ANONYMOUS_DEVELOPER = Caller(None, read=True, feedback=True, correct=True)


@dataclass(frozen=True)
class Refused(Exception):
    """The caller is refused: HTTP status, error code, message and headers of the answer."""

    status: int
    error_code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message}


def unauthenticated(message: str) -> Refused:
    return Refused(401, "UNAUTHENTICATED", message, {"WWW-Authenticate": REALM})


def rule_of(method: str, path: str) -> str | None:
    """The rule of a route; None for a route that does not exist (the app answers 404/405)."""
    return ROUTES.get((method.upper(), path))


def refusal_for(caller: Caller, rule: str, model: str) -> Refused | None:
    """403 naming what ``caller`` lacks for ``rule`` on ``model``, or None when it is allowed."""
    if caller.allows(rule):
        return None
    who = repr(caller.user)
    if not caller.read:
        return Refused(403, "PERMISSION_DENIED", f"{who} may not use model {model!r}: MLflow's permission for "
                       "this model does not grant READ")
    if rule == FEEDBACK:
        return Refused(403, "PERMISSION_DENIED", f"{who} may not give feedback on model {model!r}: true labels "
                       "need the ModelMonitor role (they feed the monitors that can turn the model red)")
    if rule == CORRECT:
        return Refused(403, "PERMISSION_DENIED", f"{who} may not correct feedback on model {model!r}: a "
                       "correction needs the ModelOwner role")
    return Refused(403, "PERMISSION_DENIED", f"{who} may not call this route")


class NoAuthentication:
    """``--no-auth``: everybody is an anonymous developer with every right (local development only)."""

    mode = "none"
    cache_seconds = 0.0

    def caller(self, authorization: str | None, address: str | None) -> Caller:
        return ANONYMOUS_DEVELOPER

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "warning": NO_AUTH_TEXT}


class _Failures:
    """Wrong credentials per caller address within a window (this worker's count)."""

    def __init__(self, limit: int, window_seconds: float):
        self.limit, self.window = limit, window_seconds
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._seen.setdefault(address, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, address: str | None) -> int | None:
        """Seconds to wait while ``address`` is over the limit, else None."""
        if not address:
            return None
        now = time.monotonic()
        with self._lock:
            times = self._recent(address, now)
            if len(times) < self.limit:
                if not times:
                    self._seen.pop(address, None)
                return None
            return max(1, int(times[-1] + self.window - now + 0.999))

    def failed(self, address: str | None) -> None:
        if not address:
            return
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > CACHE_SIZE:  # bounded: forget the quietest addresses
                for key in [k for k, v in self._seen.items() if not v or v[-1] <= now - self.window]:
                    self._seen.pop(key, None)
            self._recent(address, now).append(now)


class ServerAuthentication:
    """Callers checked by the governance server at ``base_url`` for ``model`` (see the module docstring)."""

    mode = "governance-server"

    def __init__(self, base_url: str, model: str, cache_seconds: float = DEFAULT_CACHE_SECONDS,
                 max_failures: int = 5, lockout_seconds: float = 60.0, timeout: float = SERVER_TIMEOUT_SECONDS):
        from cachetools import TTLCache

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._key = secrets.token_bytes(32)
        self._cache: TTLCache | None = TTLCache(CACHE_SIZE, cache_seconds) if cache_seconds > 0 else None
        self._lock = threading.Lock()
        self._failures = _Failures(max_failures, lockout_seconds)
        self._local = threading.local()

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "cache_seconds": self.cache_seconds}

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = requests.Session()
            session.trust_env = False  # the governance server is asked directly, never through a proxy
            self._local.session = session
        return session

    def caller(self, authorization: str | None, address: str | None) -> Caller:
        """The caller behind ``authorization`` (its header), or `Refused` (401/403/423/429/503)."""
        if not authorization or not authorization.strip():
            raise unauthenticated("authentication required: send the credentials of a governance server user "
                                  "(basic-auth)")
        if not authorization.lower().startswith(_SCHEMES) or len(authorization) > 8192:
            raise unauthenticated("unsupported Authorization header: use basic-auth (Basic base64(user:password))")
        key = hmac.new(self._key, authorization.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        if self._cache is not None:
            with self._lock:
                found = self._cache.get(key)
            if found is not None:
                if isinstance(found, Refused):
                    raise found
                return found
        wait = self._failures.retry_after(address)
        if wait is not None:
            raise Refused(429, "TOO_MANY_FAILED_SIGN_INS", f"too many failed sign-ins from {address}: try again "
                          f"in {wait} s", {"Retry-After": str(wait)})
        answer = self.ask(authorization)
        if isinstance(answer, Refused) and answer.status == 401:
            self._failures.failed(address)
            raise answer
        if self._cache is not None and (isinstance(answer, Caller) or answer.status == 403):
            with self._lock:
                self._cache[key] = answer
        if isinstance(answer, Refused):
            raise answer
        return answer

    def ask(self, authorization: str) -> Caller | Refused:
        import requests

        try:
            resp = self._session().get(self.base_url + ACCESS_PATH, params={"model": self.model},
                                       headers={"Authorization": authorization}, timeout=self.timeout)
        except requests.RequestException:
            return Refused(503, "AUTHENTICATION_UNAVAILABLE", "the governance server that checks credentials "
                           "cannot be reached: try again later")
        if resp.status_code == 200:
            try:
                data = resp.json()
                return Caller(str(data["user"]), read=bool(data.get("read")), feedback=bool(data.get("feedback")),
                              correct=bool(data.get("correct")))
            except (ValueError, KeyError, TypeError):
                return Refused(503, "AUTHENTICATION_UNAVAILABLE", "the governance server gave an answer the "
                               "sidecar cannot read: is it a governance server of this version?")
        message = _message(resp)
        if resp.status_code == 401:
            return unauthenticated(message or "authentication failed: wrong user name or password")
        if resp.status_code == 403:
            return Refused(403, "PERMISSION_DENIED", message or f"permission denied on model {self.model!r}")
        if resp.status_code in (423, 429):
            retry = resp.headers.get("Retry-After")
            return Refused(resp.status_code, "SIGN_IN_LOCKED", message or "sign-in is locked",
                           {"Retry-After": retry} if retry else {})
        return Refused(503, "AUTHENTICATION_UNAVAILABLE", f"the governance server could not check the credentials "
                       f"(HTTP {resp.status_code}): try again later")


def _message(resp: Any) -> str | None:
    try:
        data = resp.json()
    except ValueError:
        return None
    message = data.get("message") if isinstance(data, dict) else None
    return str(message)[:500] if message else None
