"""The governed model-registry store: MLflow's SqlAlchemyStore that refuses what governance forbids.

Registered under the entry point group ``mlflow.model_registry_store`` for the schemes
``governed-sqlite`` and ``governed-postgresql`` (also ``governed-mysql``); the prefix is stripped
and the rest handed to MLflow's store. Every client (Python, REST through ``mlflow server``, the
MLflow UI) goes through these methods, so the rules hold whoever calls:

* ``mlgov.`` tags change only through transitions; writing ``mlgov.action`` performs one and
  ``mlgov.field.<name>`` fills a field, as the acting user;
* the production alias binds only to a Ready to Use version whose usability is ``accept``, and
  is not removed by hand; MLflow's deprecated ``Production`` stage is refused on governed models;
* governed models and Ready to Use versions are not deleted (nor governed models renamed).

The store decides nothing itself: the rules are `workflow`'s, and the governance operations
(acting, filling a field, recording a refusal) are its `Governor`'s, handed in by the composition
root (`mlflow_governance.core.plugin`). The engine depends on the store (its transaction, MLflow's
model creation), never the other way round.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from flask import g, has_request_context, request
from mlflow.entities.model_registry.model_version_stages import (
    DEFAULT_STAGES_FOR_GET_LATEST_VERSIONS,
    STAGE_PRODUCTION,
    get_canonical_stage,
)
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.validation import (
    _validate_model_name,
    _validate_model_renaming,
    _validate_model_version,
)
from sqlalchemy.orm import Session

from mlflow_governance.core import audit, config, schema, workflow
from mlflow_governance.core.identity import current_user
from mlflow_governance.core.mlflow_private import validate_alias_name, validate_alias_name_reserved
from mlflow_governance.core.tags import (
    TAG_ACTION,
    TAG_FIELD_PREFIX,
    TAG_PREFIX,
    TAG_STAGE,
    TAG_USABILITY,
    is_governance_key,
)

T = TypeVar("T")
# The governance transaction in progress in this thread/task (`governance_session`): MLflow's own
# store methods called inside it get it from `_session_maker`, so they join it.
CURRENT_SESSION: contextvars.ContextVar[Session | None] = contextvars.ContextVar("mlgov_session", default=None)

SCHEME_PREFIX = "governed-"
_REGISTERED_MODEL_READS = "_mlgov_registered_model_reads"  # on flask.g, in a read-only request
_SQLITE_WRITERS: dict[str, threading.RLock] = {}  # one per SQLite database file, for this process
_SQLITE_WRITERS_GUARD = threading.Lock()


def _sqlite_writer(engine: sa.Engine) -> threading.RLock | None:
    """This process's queue for the write lock of a SQLite database (None for a server database).

    SQLite has one writer at a time and a waiting writer polls with growing sleeps (up to 100 ms
    each), so under eight concurrent governance actions some waited over a second while others
    went through; threads of one process queue here instead and take the database lock in turn.
    Other processes still meet SQLite's own lock, as before.
    """
    if engine.dialect.name != "sqlite":
        return None
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(str(engine.url), threading.RLock())


def strip_scheme(uri: str) -> str:
    """``governed-sqlite:///x.db`` -> ``sqlite:///x.db``."""
    if not uri or not uri.startswith(SCHEME_PREFIX):
        raise MlflowException(
            f"not a governed registry URI: {uri!r} (expected governed-sqlite:///... or governed-postgresql://...)",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return uri[len(SCHEME_PREFIX) :]


def parse_action(value: str) -> tuple[str, str | None]:
    """``"reject: too risky"`` -> ``("reject", "too risky")``; ``"approve"`` -> ``("approve", None)``."""
    action, _, comment = (value or "").partition(":")
    return action.strip().lower(), (comment.strip() or None)


class GovernedEntity(Protocol):
    """What the store reads of a model or version as governance sees it."""

    governed: bool
    tags: dict[str, str]


class Governor(Protocol):
    """The governance operations the store delegates (`mlflow_governance.core.engine` provides them)."""

    def load(self, store: Any, session: Session, name: str, version: int | None = None) -> GovernedEntity: ...

    def act(self, store: Any, model: str, action: str, version: int | None = None,
            comment: str | None = None) -> Any: ...

    def set_field(self, store: Any, model: str, name: str, value: str, version: int | None = None) -> Any: ...

    def run(self, store: Any, fn: Callable[[Session], T]) -> T: ...

    def refusal(self, session: Session, kind: str, message: str, *, actor: str | None, action: str,
                **context: Any) -> BaseException: ...

    def record(self, session: Session, *, actor: str | None, action: str, **context: Any) -> None: ...


class GovernedSqlAlchemyStore(SqlAlchemyStore):
    """SqlAlchemyStore with governance enforced on every write path.

    Each guarded write runs its check and MLflow's own write in one transaction that holds the
    governance lock (`Governor.run`): MLflow's methods called inside it get that transaction from
    `_session_maker`, so no other governance action can slip between the check and the write.
    """

    def __init__(self, store_uri: str | None = None, tracking_uri: str | None = None, *, governor: Governor,
                 **kwargs: Any):
        self.governed_uri = store_uri
        self.governor = governor
        super().__init__(strip_scheme(store_uri or ""), **kwargs)
        self._base_session_maker = self.ManagedSessionMaker
        self.ManagedSessionMaker = self._session_maker
        schema.create_all(self.engine)

    @contextmanager
    def _session_maker(self, read_only: bool = True) -> Iterator[Any]:
        """MLflow's session maker, except inside a governance transaction, which it joins."""
        outer = CURRENT_SESSION.get()
        if outer is not None:
            yield outer
            return
        with self._base_session_maker(read_only=read_only) as session:
            yield session

    @contextmanager
    def snapshot_session(self) -> Iterator[Session]:
        """A read session whose reads all see one committed state of the database.

        A status answer reads the model, each version and the production alias in several
        statements; under READ COMMITTED (PostgreSQL's default) or SQLite's autocommit reads, a
        transition committed between two of them gave an answer no state ever had (the alias gone
        but the version still Ready to Use), and a sidecar then refused with the wrong reason.
        PostgreSQL reads at REPEATABLE READ, SQLite in one deferred transaction, MySQL already reads
        one snapshot; inside a governance transaction, which holds the lock, it is joined as is.
        """
        outer = CURRENT_SESSION.get()
        if outer is not None:
            yield outer
            return
        with self._base_session_maker(read_only=True) as session:
            dialect = session.get_bind().dialect.name
            if dialect == "postgresql":
                session.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            elif dialect == "sqlite":  # pysqlite starts no transaction for a SELECT
                session.execute(sa.text("BEGIN"))
            yield session

    @contextmanager
    def governance_session(self) -> Iterator[Session]:
        """One governance write transaction, owned by the store.

        It first takes the audit head's row lock, so governance writers are serialized, and
        every MLflow store method called inside it (``create_registered_model``, the tag and
        alias writes) joins it, so a check and the write it guards commit together.
        """
        queue = _sqlite_writer(self.engine)
        if queue is not None:
            queue.acquire()
        try:
            with self._base_session_maker(read_only=False) as session:
                audit.lock(session)
                token = CURRENT_SESSION.set(session)
                try:
                    yield session
                finally:
                    CURRENT_SESSION.reset(token)
        finally:
            if queue is not None:
                queue.release()

    def create_ungoverned_model(self, name: str) -> None:
        """MLflow's own model creation (inside `governance_session`: the governor governs it next)."""
        SqlAlchemyStore.create_registered_model(self, name)

    # --- helpers ---------------------------------------------------------------------------

    def _guarded(self, check: Callable[[Session], None], write: Callable[[], T]) -> T:
        """Run ``check`` then MLflow's ``write`` in one locked governance transaction."""

        def body(session: Session) -> T:
            check(session)
            return write()

        return self.governor.run(self, body)

    def _refuse(self, session: Session, message: str, action: str, kind: str = "permission", **context: Any) -> None:
        raise self.governor.refusal(session, kind, message, actor=current_user(), action=action, **context)

    def _refuse_governance_tags(self, keys, name: str, version=None) -> None:
        """Refuse creating or copying an object that would carry any governance key in ``keys``."""
        keys = [k for k in keys if is_governance_key(k)]
        if keys:
            def check(session: Session) -> None:
                self._refuse(
                    session,
                    f"governance tags ({', '.join(keys)}) cannot be set when creating or copying a model "
                    "version or model; they change only through governance transitions",
                    "tag_write",
                    model=name,
                    version=int(version) if version is not None else None,
                )

            self._guarded(check, lambda: None)

    def _tag_write(self, name: str, key: str, value: str | None, version=None) -> None:
        """Handle a write (or delete, ``value`` None) of an ``mlgov.`` tag."""
        version = _validate_model_version(version) if version is not None else None
        if key == TAG_ACTION and value is not None:
            action, comment = parse_action(value)
            self.governor.act(self, name, action, version=version, comment=comment)
            return
        if key.startswith(TAG_FIELD_PREFIX) and value is not None:
            self.governor.set_field(self, name, key[len(TAG_FIELD_PREFIX) :], value, version=version)
            return
        verb = "delete" if value is None else "write"
        if key.startswith(TAG_PREFIX):
            message = (
                f"tag {key!r} is governance state and cannot be {verb}d directly: it changes only through a "
                f"transition (set {TAG_ACTION}) or a field ({TAG_FIELD_PREFIX}<name>) by an allowed role"
            )
        else:
            message = f"tag {key!r} looks like a governance tag; keys starting with {TAG_PREFIX!r} are reserved"

        def check(session: Session) -> None:
            self._refuse(session, message, "tag_" + verb, model=name, version=version, fields={key: value or ""})

        self._guarded(check, lambda: None)

    def _entity(self, session: Session, name: str, version: int | None = None) -> GovernedEntity | None:
        """The model (or version) as governance sees it; None when it does not exist, so that
        MLflow's own write raises MLflow's own not-found error for ungoverned names."""
        try:
            return self.governor.load(self, session, name, version)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def _governed(self, session: Session, name: str) -> bool:
        e = self._entity(session, name)
        return e is not None and e.governed

    # --- registered models -----------------------------------------------------------------

    def get_registered_model(self, name):
        """MLflow's read, answered once per read-only request.

        On a GET, MLflow's permission check reads the model (to tell a prompt from a model) and
        then its handler reads it again: the second read is the first one's answer. Only in a
        GET or HEAD request (which writes nothing) and only for that request (``flask.g``);
        governance decisions never use it (they read in their own transaction)."""
        if not has_request_context() or request.method not in ("GET", "HEAD") or CURRENT_SESSION.get() is not None:
            return super().get_registered_model(name)
        memo = g.setdefault(_REGISTERED_MODEL_READS, {})
        if name not in memo:  # a refusal (no such model) is not kept: it is raised each time
            memo[name] = super().get_registered_model(name)
        return memo[name]

    def create_registered_model(self, name, tags=None, description=None, deployment_job_id=None):
        self._refuse_governance_tags([t.key for t in tags or []], name)
        return super().create_registered_model(name, tags, description, deployment_job_id)

    def rename_registered_model(self, name, new_name):
        _validate_model_renaming(new_name)  # MLflow's checks first, in MLflow's order

        def check(session: Session) -> None:
            denied = workflow.may_rename_or_delete_model(self._governed(session, name), name, delete=False)
            if denied:
                self._refuse(session, denied.message, "rename", model=name)

        return self._guarded(check, lambda: SqlAlchemyStore.rename_registered_model(self, name, new_name))

    def delete_registered_model(self, name):
        def check(session: Session) -> None:
            denied = workflow.may_rename_or_delete_model(self._governed(session, name), name, delete=True)
            if denied:
                self._refuse(session, denied.message, "delete_model", model=name)

        return self._guarded(check, lambda: SqlAlchemyStore.delete_registered_model(self, name))

    def set_registered_model_tag(self, name, tag):
        if is_governance_key(tag.key):
            return self._tag_write(name, tag.key, tag.value)
        return super().set_registered_model_tag(name, tag)

    def delete_registered_model_tag(self, name, key):
        if is_governance_key(key):
            return self._tag_write(name, key, None)
        return super().delete_registered_model_tag(name, key)

    # --- model versions --------------------------------------------------------------------

    def create_model_version(self, name, source, run_id=None, tags=None, *args, **kwargs):
        self._refuse_governance_tags([t.key for t in tags or []], name)
        return super().create_model_version(name, source, run_id, tags, *args, **kwargs)

    def copy_model_version(self, src_mv, dst_name):
        # Refuse before MLflow creates the destination model: a copy cannot carry governance state.
        self._refuse_governance_tags(list(src_mv.tags or {}), dst_name)
        return super().copy_model_version(src_mv, dst_name)

    def set_model_version_tag(self, name, version, tag):
        if is_governance_key(tag.key):
            return self._tag_write(name, tag.key, tag.value, version)
        return super().set_model_version_tag(name, version, tag)

    def delete_model_version_tag(self, name, version, key):
        if is_governance_key(key):
            return self._tag_write(name, key, None, version)
        return super().delete_model_version_tag(name, version, key)

    def delete_model_version(self, name, version):
        version = _validate_model_version(version)
        state: dict[str, Any] = {}

        def check(session: Session) -> None:
            e = self._entity(session, name, version)
            stage = e.tags.get(TAG_STAGE) if e is not None else None
            state["stage"] = stage
            denied = workflow.may_delete_version(stage, version, name) if e is not None and e.governed else None
            if denied:
                self._refuse(session, denied.message, "delete_version", model=name, version=version, stage=stage)

        def write() -> None:
            SqlAlchemyStore.delete_model_version(self, name, version)
            if state.get("stage"):
                self.governor.record(CURRENT_SESSION.get(), actor=current_user(), model=name, version=version,
                                     action="delete_version", from_stage=state["stage"])

        return self._guarded(check, write)

    def transition_model_version_stage(self, name, version, stage, archive_existing_versions=False):
        # MLflow's own checks first, in its order (the stage, then archiving), then the name and
        # version before anything reaches SQL (MLflow would pass a non-numeric version to the query).
        canonical = get_canonical_stage(stage)
        if archive_existing_versions and canonical not in DEFAULT_STAGES_FOR_GET_LATEST_VERSIONS:
            return SqlAlchemyStore.transition_model_version_stage(self, name, version, stage, True)  # MLflow's error
        _validate_model_name(name)
        version = _validate_model_version(version)

        def check(session: Session) -> None:
            if canonical == STAGE_PRODUCTION and self._governed(session, name):
                self._refuse(
                    session,
                    f"{name!r} is governed: MLflow's deprecated 'Production' stage is not used; a version "
                    f"reaches production through the workflow ({workflow.READY_TO_USE!r} and the "
                    f"{config.production_alias()!r} alias)",
                    "transition_stage",
                    model=name,
                    version=version,
                )

        return self._guarded(
            check,
            lambda: SqlAlchemyStore.transition_model_version_stage(self, name, version, stage, archive_existing_versions),
        )

    # --- aliases ---------------------------------------------------------------------------

    def set_registered_model_alias(self, name, alias, version):
        # MLflow's checks first, in its order: an alias MLflow refuses is never ours to judge.
        _validate_model_name(name)
        validate_alias_name(alias)
        validate_alias_name_reserved(alias)
        version = _validate_model_version(version)
        if not config.is_production_alias(alias):
            return super().set_registered_model_alias(name, alias, version)

        def check(session: Session) -> None:
            e = self._entity(session, name, version)
            if e is None:
                return  # MLflow's write names the missing model version
            if e.governed and alias != config.production_alias():
                self._refuse(
                    session,
                    f"alias {alias!r} looks like the production alias {config.production_alias()!r} and is "
                    "reserved on a governed model: production is marked only by the workflow",
                    "set_alias",
                    model=name,
                    version=version,
                    stage=e.tags.get(TAG_STAGE),
                )
            stage, usability = e.tags.get(TAG_STAGE), e.tags.get(TAG_USABILITY)
            denied = workflow.may_bind_production_alias(stage, usability, version) if e.governed else None
            if denied:
                self._refuse(session, f"{alias!r}: {denied.message}", "set_alias", model=name, version=version,
                             stage=stage)

        return self._guarded(check, lambda: SqlAlchemyStore.set_registered_model_alias(self, name, alias, version))

    def delete_registered_model_alias(self, name, alias):
        if alias != config.production_alias():  # look-alikes cannot be bound on governed models
            return super().delete_registered_model_alias(name, alias)

        def check(session: Session) -> None:
            if self._governed(session, name):
                self._refuse(
                    session,
                    f"the {alias!r} alias of governed model {name!r} is removed only by decommissioning",
                    "delete_alias",
                    model=name,
                )

        return self._guarded(check, lambda: SqlAlchemyStore.delete_registered_model_alias(self, name, alias))
