"""Who is asking: the governance server's sign-in, cheap enough to run on every request.

MLflow's basic-auth checks a password with werkzeug's scrypt (about 100 ms on this kind of
machine), and within one request its Flask hook, ``sender_is_admin`` and the permission
validators each call the authorization function again: a request paid the check several times.
This module is the server's ``authorization_function`` (MLflow's documented extension point), so
MLflow's Flask hook and its FastAPI middleware both use it:

* **Once per request.** The answer is kept on ``flask.g`` for the rest of the request.
* **Once per lifetime per process.** A successful check is remembered for
  ``MLGOV_AUTH_CACHE_SECONDS`` (MLflow's own cache, ``auth_cache_ttl_seconds``, has the same idea
  but is invalidated only in the worker that handled a change), under the user name and an HMAC of
  the password with a per-process random key (the password is never in the key in clear), and only
  while the ``credentials`` counter of `mlflow_governance.server.auth_state` is unchanged: every
  request reads the counters (one row), and changing a password, a user's admin flag or deleting a
  user bumps it, so the change is seen in every worker on the very next request. MLflow's
  permission reads are remembered the same way under the ``grants`` counter. Only successes are
  cached.
* **Lock-out.** Failed checks are recorded in the registry database (so every worker counts
  them); ``MLGOV_SIGNIN_MAX_FAILURES`` failures for one user name (four times as many for one
  address, whatever the names: password spraying) within ``MLGOV_SIGNIN_LOCKOUT_SECONDS`` lock it
  for that long after the last one: every password
  check for it, cached or not, is refused with 423 and ``Retry-After`` without looking at the
  password, so neither the cache nor the lock-out makes guessing cheaper. An unknown user name
  costs the same scrypt check as a wrong password.
* **Browser sessions.** ``/governance/signin`` (see `mlflow_governance.server.signin`) sets
  ``mlgov_session``: HttpOnly, SameSite=Strict, signed with the server's secret
  (``MLFLOW_FLASK_SERVER_SECRET_KEY``), expiring after ``MLGOV_SESSION_SECONDS``, and bound to
  an HMAC of the user's stored hash, so a password change or a deletion ends it. A page opened
  without credentials is redirected to the sign-in form; API clients keep basic-auth and get
  MLflow's 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote

import sqlalchemy as sa
from flask import Response, g, has_request_context, redirect, request
from werkzeug.datastructures import Authorization

from mlflow_governance.core import environment_variables as ev
from mlflow_governance.core import schema
from mlflow_governance.server import auth_state

_log = logging.getLogger(__name__)

SESSION_COOKIE = "mlgov_session"
SIGNIN_PAGE = "/governance/signin"
SIGNOUT_PAGE = "/governance/signout"
_SESSION_SALT = "mlgov-session"
_MEMO = "_mlgov_authorization"
#: An address is locked after this many times MLGOV_SIGNIN_MAX_FAILURES failures (for any names).
ADDRESS_FACTOR = 4
_API_MARKERS = ("/api/", "/ajax-api/", "/graphql", "/v1/", "/gateway/")


class SignInLocked(Exception):
    """Too many failed sign-ins for a user name or an address; ``retry_after`` seconds to wait."""

    def __init__(self, who: str, retry_after: int, failures: int):
        super().__init__(f"sign-in for {who} is locked for {retry_after} s after {failures} failed attempts")
        self.message = str(self)
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Settings:
    max_failures: int
    lockout_seconds: int
    session_seconds: int


_settings: _Settings | None = None
_passwords = auth_state.Remembered()  # (user, HMAC of the password) -> True, under ``credentials``
_not_locked = auth_state.Remembered()  # (user, address) -> True, under ``failures``
_hashes = auth_state.Remembered()  # user -> stored hash (for session cookies), under ``credentials``
_KEY = secrets.token_bytes(32)  # per process: cache keys are worthless outside it
_dummy_hash: str | None = None


def settings() -> _Settings:
    global _settings
    if _settings is None:
        _settings = _Settings(ev.MLGOV_SIGNIN_MAX_FAILURES.get(),
                              ev.MLGOV_SIGNIN_LOCKOUT_SECONDS.get(), ev.MLGOV_SESSION_SECONDS.get())
    return _settings


def _mac(*parts: str) -> bytes:
    return hmac.new(_KEY, "\0".join(parts).encode("utf-8"), hashlib.sha256).digest()


# --- the user database ---------------------------------------------------------------------------


def _auth():
    from mlflow.server import auth

    return auth


def stored_hash(username: str) -> str | None:
    """The user's current password hash, or None for an unknown user (one indexed row)."""
    from mlflow.server.auth.db.models import SqlUser

    users = SqlUser.__table__
    with _auth().store.engine.connect() as conn:  # Core, not an ORM session: this runs on every request
        return conn.execute(sa.select(users.c.password_hash).where(users.c.username == username)).scalar()


def _check(stored: str | None, password: str) -> bool:
    """werkzeug's check; an unknown user is checked against a dummy hash so it costs the same."""
    global _dummy_hash
    from werkzeug.security import check_password_hash, generate_password_hash

    if stored is None:
        if _dummy_hash is None:
            _dummy_hash = generate_password_hash(secrets.token_hex(16))
        check_password_hash(_dummy_hash, password)
        return False
    return check_password_hash(stored, password)


# --- lock-out ------------------------------------------------------------------------------------


def _failures_engine() -> sa.Engine:
    from mlflow_governance.server.databases import governed_store

    return governed_store().engine


def _locked(username: str, address: str | None, counters: auth_state.Counters) -> None:
    """Raise `SignInLocked` while the user name or the address is locked out.

    "Not locked" is remembered while no failure has been recorded since (``failures``): with no
    new failure, a lock can only expire, never begin. "Locked" is never remembered."""
    if _not_locked.get((username, address), counters.failures)[0]:
        return
    s = settings()
    now = int(time.time() * 1000)
    since = now - s.lockout_seconds * 1000
    f = schema.signin_failures
    by_user = f.c.username == username
    by_address = f.c.address == address if address else sa.false()  # password spraying: many names, one address
    query = sa.select(
        sa.func.count().filter(by_user), sa.func.max(f.c.ts).filter(by_user),
        sa.func.count().filter(by_address), sa.func.max(f.c.ts).filter(by_address),
    ).where(f.c.ts > since, sa.or_(by_user, by_address))
    with _failures_engine().connect() as conn:  # one indexed query per password check
        user_count, user_last, address_count, address_last = conn.execute(query).one()
    for who, count, last, limit in (("user " + repr(username), user_count, user_last, s.max_failures),
                                    (f"address {address}", address_count, address_last,
                                     s.max_failures * ADDRESS_FACTOR)):
        if count and count >= limit:
            retry = max(1, int((last + s.lockout_seconds * 1000 - now + 999) // 1000))
            raise SignInLocked(who, retry, int(count))
    _not_locked.put((username, address), counters.failures)


def _failed(username: str, address: str | None) -> None:
    s = settings()
    now = int(time.time() * 1000)
    f = schema.signin_failures
    with _failures_engine().begin() as conn:
        conn.execute(f.insert().values(ts=now, username=username[:256], address=(address or None)))
        auth_state.bump(conn, failures=True)  # every worker checks the lock-out again
        # Keep the table small: rows older than a day count for nothing.
        conn.execute(f.delete().where(f.c.ts < now - max(86_400, s.lockout_seconds) * 1000))
        count = conn.execute(sa.select(sa.func.count()).where(
            f.c.username == username, f.c.ts > now - s.lockout_seconds * 1000)).scalar()
    _log.warning("failed sign-in for user %r from %s (%d within %d s)", username, address or "an unknown address",
                 count, s.lockout_seconds)
    if count >= s.max_failures:
        _log.warning("sign-in for user %r is locked for %d s", username, s.lockout_seconds)


def _succeeded(username: str) -> None:
    f = schema.signin_failures
    with _failures_engine().begin() as conn:
        conn.execute(f.delete().where(f.c.username == username))


# --- verification --------------------------------------------------------------------------------


def verify_password(username: str, password: str, address: str | None = None) -> bool:
    """Whether ``password`` is ``username``'s current one; `SignInLocked` while locked out.

    A success is remembered (per process) while the ``credentials`` counter is unchanged, so it is
    trusted again only until the user changes; a failure is recorded for the lock-out and never
    remembered."""
    if not username:
        return False
    counters = auth_state.current()
    _locked(username, address, counters)
    key = (username, _mac(password))
    if _passwords.get(key, counters.credentials)[0]:
        return True
    stored = stored_hash(username)
    if _check(stored, password) and not _auth()._is_disabled_legacy_admin_login(username, password):
        # Under the counter read *before* the check: a change since then is seen next request.
        _passwords.put(key, counters.credentials)
        _succeeded(username)
        return True
    _failed(username, address)
    return False


# --- browser sessions ----------------------------------------------------------------------------


def _serializer():
    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer(ev.MLFLOW_FLASK_SERVER_SECRET_KEY.get() or "", salt=_SESSION_SALT)


def _fingerprint(stored: str) -> str:
    key = (ev.MLFLOW_FLASK_SERVER_SECRET_KEY.get() or "").encode("utf-8")
    return hmac.new(key, stored.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def session_token(username: str) -> str:
    """A signed, timestamped session token for ``username``, bound to its stored hash."""
    stored = stored_hash(username)
    if stored is None:
        raise ValueError(f"unknown user {username!r}")
    return _serializer().dumps({"u": username, "h": _fingerprint(stored)})


def session_user(token: str) -> str | None:
    """The user of a valid, unexpired session token whose password is unchanged; else None."""
    from itsdangerous import BadSignature

    try:
        data = _serializer().loads(token, max_age=settings().session_seconds)
    except (BadSignature, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), str) or not isinstance(data.get("h"), str):
        return None
    stored = _current_hash(data["u"])
    if stored is None or not hmac.compare_digest(_fingerprint(stored), data["h"]):
        return None
    return data["u"]


def _current_hash(username: str) -> str | None:
    """`stored_hash`, remembered while the ``credentials`` counter is unchanged."""
    counter = auth_state.current().credentials
    hit, stored = _hashes.get(username, counter)
    if not hit:
        stored = stored_hash(username)
        _hashes.put(username, counter, stored)
    return stored


def set_session_cookie(response: Response, username: str) -> Response:
    response.set_cookie(SESSION_COOKIE, session_token(username), max_age=settings().session_seconds, path="/",
                        httponly=True, samesite="Strict", secure=request.is_secure)
    return response


def clear_session_cookie(response: Response) -> Response:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict", secure=request.is_secure)
    return response


# --- the authorization function ------------------------------------------------------------------


def _locked_response(exc: SignInLocked) -> Response:
    body = json.dumps({"error_code": "PERMISSION_DENIED", "message": exc.message})
    return Response(body, status=423, mimetype="application/json", headers={"Retry-After": str(exc.retry_after)})


def _wants_page() -> bool:
    """A browser navigating to a page (not a script calling the API)."""
    if request.method != "GET" or any(m in request.path for m in _API_MARKERS):
        return False
    return "text/html" in (request.headers.get("Accept") or "")


def address() -> str | None:
    return request.remote_addr if has_request_context() else None


def authenticate_request() -> Authorization | Response:
    """MLflow's ``authorization_function``: basic-auth or the session cookie, at most once a request."""
    memo = g.get(_MEMO)
    if memo is not None:
        return memo
    result = _authenticate()
    if isinstance(result, Authorization):
        setattr(g, _MEMO, result)
    return result


def _authenticate() -> Authorization | Response:
    auth = request.authorization
    if auth is not None and auth.type == "basic" and auth.username:
        try:
            ok = verify_password(auth.username, auth.password or "", address())
        except SignInLocked as exc:
            return _locked_response(exc)
        return auth if ok else _auth().make_basic_auth_response()
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        user = session_user(token)
        if user is not None:
            return Authorization("basic", {"username": user})
    if _wants_page():
        target = request.full_path.rstrip("?") if request.query_string else request.path
        return redirect(f"{SIGNIN_PAGE}?next={quote(target, safe='')}", code=303)
    return _auth().make_basic_auth_response()
