"""What a governance server worker may remember between requests, and when it must forget.

An authenticated request costs a password check (werkzeug's scrypt, about 100 ms here), a
lock-out check and several reads of MLflow's permission store (the user, its grants, the model's
permission; MLflow's response redaction asks again). A worker remembers those answers, but only
while nothing they depend on has changed in *any* worker. One row of counters in the registry
database says so (`mlflow_governance.core.schema.auth_counters`); each request reads it once (one
primary-key row) and an answer is used only while its counter still has the value it was computed
under:

* ``credentials``: a user's password, admin flag or existence changed (MLflow's auth store
  ``update_user``, ``delete_user``, ``create_user``, and any write this module does not know);
* ``grants``: any write to MLflow's auth store (permissions, roles, users);
* ``failures``: a failed sign-in was recorded (the lock-out counts them).

The writes that bump the counters are the server's own (`remember_store_reads` wraps every write
method of MLflow's auth store), so a change made through any worker is seen by every worker on its
next request. Every answer also expires after ``MLGOV_AUTH_CACHE_SECONDS`` (0 remembers nothing):
that bounds how long a change made behind the server's back (SQL on the user database) can go
unseen. Only successful password checks and "not locked" are remembered; a failure never is.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cachetools import TTLCache
from flask import g, has_request_context

from mlflow_governance.core import environment_variables as ev
from mlflow_governance.core import schema

_COUNTERS = "_mlgov_auth_counters"  # on flask.g: the counters this request read
_CHANGED = "_mlgov_auth_changed"  # on flask.g: this request wrote to the auth store
_REQUEST_MEMO = "_mlgov_auth_reads"  # on flask.g: the store reads answered in this request

#: MLflow's auth-store write methods that do not touch a user's password, admin flag or existence.
#: A write not named here (a new MLflow method, too) also bumps ``credentials``: unknown is unsafe.
GRANT_ONLY_WRITES = frozenset({
    "add_role_permission", "assign_role_to_user", "create_experiment_permission",
    "create_gateway_endpoint_permission", "create_gateway_model_definition_permission",
    "create_gateway_secret_permission", "create_mcp_server_permission", "create_registered_model_permission",
    "create_role", "create_scorer_permission", "delete_experiment_permission", "delete_gateway_endpoint_permission",
    "delete_gateway_model_definition_permission", "delete_gateway_secret_permission", "delete_grants_for_resource",
    "delete_mcp_server_permission", "delete_registered_model_permission", "delete_role",
    "delete_roles_for_workspace", "delete_scorer_permission", "delete_workspace_permission",
    "delete_workspace_permissions_for_workspace", "grant_user_permission", "grant_user_resource_permission",
    "remove_role_permission", "rename_grants_for_resource", "revoke_user_resource_permission",
    "set_workspace_permission", "unassign_role_from_user", "update_experiment_permission",
    "update_gateway_endpoint_permission", "update_gateway_model_definition_permission",
    "update_gateway_secret_permission", "update_mcp_server_permission", "update_registered_model_permission",
    "update_role", "update_role_permission", "update_scorer_permission",
})
_READ_PREFIXES = ("get_", "list_", "has_", "is_", "user_has_")
_NOT_WRAPPED = frozenset({"authenticate_user", "init_db"})  # its own password check; start-up only


@dataclass(frozen=True)
class Counters:
    credentials: int
    grants: int
    failures: int


def _engine() -> sa.Engine:
    from mlflow_governance.server.databases import governed_store

    return governed_store().engine


def read_counters() -> Counters:
    """The counters as the database has them now (one primary-key row)."""
    c = schema.auth_counters
    with _engine().connect() as conn:
        row = conn.execute(sa.select(c.c.credentials, c.c.grants, c.c.failures).where(c.c.id == 1)).first()
    if row is None:  # a database created before the counters: create_all adds the row
        schema.create_all(_engine())
        return Counters(0, 0, 0)
    return Counters(*row)


def current() -> Counters:
    """The counters for this request: read once per request (every call outside one reads them)."""
    if not has_request_context():
        return read_counters()
    counters = g.get(_COUNTERS)
    if counters is None:
        counters = read_counters()
        setattr(g, _COUNTERS, counters)
    return counters


def bump(conn: sa.Connection | None = None, *, credentials: bool = False, grants: bool = False,
         failures: bool = False) -> None:
    """Make every worker forget what depended on the named counters (in ``conn``'s transaction if given)."""
    c = schema.auth_counters
    values = {name: getattr(c.c, name) + 1 for name, on in
              (("credentials", credentials), ("grants", grants), ("failures", failures)) if on}
    if not values:
        return
    statement = c.update().where(c.c.id == 1).values(**values)
    if conn is not None:
        conn.execute(statement)
    else:
        with _engine().begin() as own:
            own.execute(statement)


def cache_seconds() -> int:
    return ev.MLGOV_AUTH_CACHE_SECONDS.get()


class Remembered:
    """Answers valid while one counter keeps the value they were computed under, for at most
    ``MLGOV_AUTH_CACHE_SECONDS``; shared by the threads of one worker process."""

    def __init__(self, maxsize: int = 10_000):
        self._maxsize = maxsize
        self._cache: TTLCache | None = None
        self._lock = threading.Lock()
        self._ready = False

    def _store(self) -> TTLCache | None:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    seconds = cache_seconds()
                    self._cache = TTLCache(self._maxsize, seconds) if seconds > 0 else None
                    self._ready = True
        return self._cache

    def get(self, key: Hashable, counter: int) -> tuple[bool, Any]:
        cache = self._store()
        if cache is None:
            return False, None
        with self._lock:
            entry = cache.get(key)
        if entry is None or entry[0] != counter:
            return False, None
        return True, entry[1]

    def put(self, key: Hashable, counter: int, value: Any = True) -> None:
        cache = self._store()
        if cache is not None:
            with self._lock:
                cache[key] = (counter, value)

    def clear(self) -> None:
        with self._lock:
            if self._cache is not None:
                self._cache.clear()


_store_reads = Remembered(maxsize=20_000)


def remember_store_reads(store: Any) -> None:
    """Wrap MLflow's auth store: reads answered from what this worker remembers, writes bump the counters.

    Within one request a read is answered once (the permission hook, ``sender_is_admin`` and the
    response redaction ask the same questions); across requests while ``grants`` is unchanged. A
    write clears the request's answers and, for the rest of that request, reads go to the database,
    so a request that grants a permission and then reads it sees the grant."""
    if getattr(store, "_mlgov_remembered", False):
        return
    for name in dir(type(store)):
        if name.startswith("_") or name in _NOT_WRAPPED or not callable(getattr(type(store), name, None)):
            continue
        original = getattr(store, name)
        wrapper = _read(name, original) if name.startswith(_READ_PREFIXES) else _write(name, original)
        setattr(store, name, functools.wraps(original)(wrapper))
    store._mlgov_remembered = True


def _frozen(value: Any) -> Any:
    """A hashable stand-in for an argument: sets and lists (MLflow passes resource-type sets) frozen."""
    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(_frozen(v) for v in value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_frozen(v) for v in value))
    return value


def _read(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def read(*args: Any, **kwargs: Any) -> Any:
        if not has_request_context():
            return original(*args, **kwargs)
        try:
            key = (name, _frozen(args), _frozen(tuple(sorted(kwargs.items()))))
            hash(key)
        except TypeError:
            return original(*args, **kwargs)
        memo = g.setdefault(_REQUEST_MEMO, {})
        if key in memo:
            return copy.deepcopy(memo[key])
        counters = None if g.get(_CHANGED) else g.get(_COUNTERS)  # read by the authentication
        if counters is not None:
            hit, value = _store_reads.get(key, counters.grants)
            if not hit:
                value = original(*args, **kwargs)
                _store_reads.put(key, counters.grants, copy.deepcopy(value))
        else:
            value = original(*args, **kwargs)
        memo[key] = value
        return copy.deepcopy(value)

    return read


def _write(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def write(*args: Any, **kwargs: Any) -> Any:
        if has_request_context():
            g.pop(_REQUEST_MEMO, None)
            setattr(g, _CHANGED, True)
        try:
            return original(*args, **kwargs)
        finally:
            if has_request_context():
                g.pop(_REQUEST_MEMO, None)
            # Also when it failed: whatever it may have changed is forgotten everywhere.
            bump(credentials=name not in GRANT_ONLY_WRITES, grants=True)

    return write
