"""Shared fixtures: governed registries on SQLite and on the local PostgreSQL server.

Expensive things are made once per session: a migrated SQLite template (copied per test that
needs a private database) and a fresh PostgreSQL database that no other run sees.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# One user per governance role, as in the seed course; "admin" manages the role table.
USERS = {
    "olivia": "ModelOwner",
    "adam": "ModelApprover",
    "erin": "ModelDataEngineer",
    "devi": "ModelDeveloper",
    "victor": "ModelValidator",
    "dora": "ModelDeployer",
    "mona": "ModelMonitor",
}
ROLE_USER = {role: user for user, role in USERS.items()}
PG_ADMIN_URL = os.environ.get("MLGOV_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test inherits registry settings or an acting user from the caller's shell."""
    for var in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLGOV_USER",
        "MLGOV_ADMIN",
        "MLGOV_SEPARATION_OF_DUTIES",
        "MLGOV_PRODUCTION_ALIAS",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        # mlflow.set_experiment() exports these; a stale id leaks into tests on another database
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_RUN_ID",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLGOV_ADMIN", "admin")
    monkeypatch.chdir(tmp_path)
    # mlflow.set_experiment() also remembers the experiment in a module global: a stale id
    # from another test's database must not leak into this one.
    import mlflow.tracking.fluent as fluent

    monkeypatch.setattr(fluent, "_active_experiment_id", None)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped at the end)."""
    import sqlalchemy as sa

    name = f"mlgov_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    yield url
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    for db_url, eng in list(SqlAlchemyStore._engine_map.items()):
        if name in db_url:
            eng.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated MLflow + governance SQLite database, copied by `fresh_sqlite`."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    from mlflow_governance.plugin import governed_store_builder
    from mlflow_governance.store import GovernedSqlAlchemyStore

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    TrackingStore(f"sqlite:///{path}", str(path.parent / "artifacts"))
    governed_store_builder(f"governed-sqlite:///{path}")
    for eng_uri, eng in list(GovernedSqlAlchemyStore._engine_map.items()):
        if str(path) in eng_uri:
            eng.dispose()
            del GovernedSqlAlchemyStore._engine_map[eng_uri]
    return path


@pytest.fixture
def fresh_sqlite(sqlite_template, tmp_path) -> Path:
    """A private, already migrated SQLite database file for one test."""
    path = tmp_path / "mlflow.db"
    shutil.copy(sqlite_template, path)
    return path


def _grant_all(registry_uri: str) -> None:
    from mlflow_governance.client import GovernanceClient

    client = GovernanceClient(registry_uri)
    with acting("admin"):
        for user, role in USERS.items():
            client.grant(user, role)


@contextmanager
def acting(user: str | None) -> Iterator[None]:
    """Act as ``user`` (``MLGOV_USER``) for a block."""
    old = os.environ.get("MLGOV_USER")
    if user is None:
        os.environ.pop("MLGOV_USER", None)
    else:
        os.environ["MLGOV_USER"] = user
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLGOV_USER", None)
        else:
            os.environ["MLGOV_USER"] = old


@pytest.fixture
def sqlite_registry(fresh_sqlite, monkeypatch, tmp_path) -> str:
    """A governed SQLite registry (tracking on the same file), roles granted; sets the env."""
    uri = f"governed-sqlite:///{fresh_sqlite}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{fresh_sqlite}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    _grant_all(uri)
    return uri


@pytest.fixture(scope="session")
def _pg_roles_granted(pg_database) -> str:
    uri = f"governed-{pg_database}"
    old = os.environ.get("MLGOV_ADMIN")
    os.environ["MLGOV_ADMIN"] = "admin"
    try:
        _grant_all(uri)
    finally:
        if old is None:
            os.environ.pop("MLGOV_ADMIN", None)
        else:
            os.environ["MLGOV_ADMIN"] = old
    return uri


@pytest.fixture
def pg_registry(_pg_roles_granted, pg_database, monkeypatch) -> str:
    """The session's governed PostgreSQL registry (model names must be unique per test)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pg_database)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", _pg_roles_granted)
    return _pg_roles_granted


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request) -> str:
    """Run the test against both a governed SQLite and a governed PostgreSQL registry."""
    return request.getfixturevalue(f"{request.param}_registry" if request.param == "sqlite" else "pg_registry")


def unique(name: str) -> str:
    """A model name no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


# Session fixtures of the later stages, shared by every test module.
from tests.plugins.acquisition_fixtures import *  # noqa: E402,F401,F403
from tests.plugins.demo_fixtures import *  # noqa: E402,F401,F403
from tests.plugins.postgres_cluster import *  # noqa: E402,F401,F403
from tests.plugins.serving_fixtures import *  # noqa: E402,F401,F403
from tests.plugins.training_fixtures import *  # noqa: E402,F401,F403
