"""Shared fixtures: governed registries on SQLite and on the local PostgreSQL server.

Expensive things are made once per session: a migrated SQLite template (copied per test that
needs a private database) and a fresh PostgreSQL database that no other run sees.

Under pytest-xdist (`make test`: ``-n 2 --dist loadgroup``) every worker is its own session: its own
PostgreSQL databases (named after the worker, plus a random suffix), its own temporary directories
(and working directory), and ports no other worker hands out (`free_port`). The test modules that
use an expensive shared fixture (the README sequences, the demo run) run on one worker, each module
with module-scoped fixtures on one worker; see `xdist_plan`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mlflow_governance.sidecar.server import THREAD_LIMIT_VARS

# `make test` runs two workers on two cores, and each starts servers, sidecars and `mlflow run`
# steps beside the other's: every numeric library gets one thread (as in the sidecar's workers),
# in the tests and in every process they start, set before NumPy is imported. With one thread per
# core, OpenMP's threads spin-wait against the other worker's processes: the three trainings of
# the README and the pipeline took 102 CPU seconds, with one thread 26. A value already set wins.
for _name in THREAD_LIMIT_VARS:
    os.environ.setdefault(_name, "1")
# The Spark tests' JVMs (`SPARK_SUBMIT_OPTS` reaches the driver pyspark starts, without the note
# JAVA_TOOL_OPTIONS prints on stderr) compile with the client compiler only and collect with one
# thread: their jobs last seconds, and the optimising compiler's threads took half their CPU time
# (91 CPU seconds for tests/test_acquisition_spark.py, 48 without).
os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")

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


def worker_id() -> str:
    """This pytest-xdist worker's id ("gw0", "gw1"...), or "main" without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER") or "main"


def db_name(prefix: str) -> str:
    """A PostgreSQL database name no other run or worker uses: prefix, worker, random suffix."""
    return f"{prefix}_{worker_id()}_{uuid.uuid4().hex[:10]}"


_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 that no other xdist worker and no earlier call hands out.

    The kernel picks a free port; of those, worker i of n takes only ports of blocks of 8 numbered i
    modulo n ((port // 8) % n == i; not port % n: Linux gives bind(0) ports of one parity only), so
    two workers never get the same port between a call and the server's bind.
    """
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    worker = worker_id()
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if (port // 8) % count == index % count and port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1")


# --- pytest-xdist: which tests share a worker ---------------------------------------------------

# Fixtures too expensive to make once per worker: every test module that uses one (directly or
# through another fixture) joins that fixture's group, so one worker makes it once. In this order
# of precedence (a module using two joins the first) and of scheduling.
SHARED_GROUPS: tuple[tuple[str, frozenset[str]], ...] = (
    # both README sequences at once (about three minutes); the fixture starts every selected
    # sequence of the session, so their tests must all run on the worker that starts them
    ("readme", frozenset({"readme_runs"})),
    # `mlgov demo` as a process (about two minutes): tests/test_demo.py and tests/test_trace.py
    ("demo", frozenset({"demo_run"})),
)
# Sent out early, after the shared groups, one module at a time (the longest work first, so that
# the tests sent one at a time fill the end of both workers' runs):
# * the modules on the session's trained model (`mlflow run -e train`, about 40 s, started in the
#   background as the run starts and shared by the workers): 15 modules and about half the suite's
#   time, too much for one worker.
EARLY_FIXTURES = frozenset({"trained_model", "production_model"})
# * the modules of the slowest single tests (pipeline run, Spark).
EARLY_MODULES = frozenset({"tests/test_pipeline.py", "tests/test_acquisition_spark.py"})
_WIDER_THAN_FUNCTION = ("module", "class", "package")


def _uses_wide_fixture(item: pytest.Item) -> bool:
    """Whether the item uses a module-, class- or package-scoped fixture (made once per worker
    that runs any of the module's tests: the module's tests stay together)."""
    info = getattr(item, "_fixtureinfo", None)
    for defs in (getattr(info, "name2fixturedefs", None) or {}).values():
        if defs and getattr(defs[-1], "scope", "function") in _WIDER_THAN_FUNCTION:
            return True
    return False


_WIDE_SCOPE_IN_SOURCE = re.compile(r"""scope\s*=\s*["'](?:module|class|package)["']""")


def _defines_wide_fixture(item: pytest.Item) -> bool:
    """Whether the item's module defines a module-, class- or package-scoped fixture: also those
    its tests only reach by request.getfixturevalue, which item.fixturenames does not show."""
    try:
        return bool(_WIDE_SCOPE_IN_SOURCE.search(item.path.read_text(encoding="utf-8")))
    except OSError:
        return False


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _group_of_module(module: str) -> str:
    """tests/test_x.py -> test_x (the group's name, appended to its tests' node ids)."""
    return module.removeprefix("tests/").removesuffix(".py")


def xdist_plan(items: list[pytest.Item]) -> dict[str, tuple[int, str | None]]:
    """module -> (rank in the schedule, xdist group or None).

    A module using a shared fixture joins its group; a module using a module-scoped fixture (or
    the trained model) is a group of its own; the others' tests go one at a time. Ranks: the shared
    groups in SHARED_GROUPS order, then the early modules, then the other module groups, then the
    rest."""
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(_module(item), []).append(item)
    plan: dict[str, tuple[int, str | None]] = {}
    early, grouped, single = len(SHARED_GROUPS), len(SHARED_GROUPS) + 1, len(SHARED_GROUPS) + 2
    for module, its in modules.items():
        used = set().union(*(set(getattr(item, "fixturenames", ())) for item in its))
        shared = next((i for i, (_, fixtures) in enumerate(SHARED_GROUPS) if used & fixtures), None)
        if shared is not None:
            plan[module] = (shared, SHARED_GROUPS[shared][0])
        elif used & EARLY_FIXTURES:
            plan[module] = (early, _group_of_module(module))
        elif _defines_wide_fixture(its[0]) or any(_uses_wide_fixture(item) for item in its):
            plan[module] = (early if module in EARLY_MODULES else grouped, _group_of_module(module))
        else:
            plan[module] = (early if module in EARLY_MODULES else single, None)
    return plan


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    """On an xdist worker under --dist loadgroup: mark each test with its group (`xdist_plan`) and
    order the collection by rank, each module's tests in their order.

    Every worker collects the same items and computes the same marks and order (nothing here
    depends on the worker), as xdist requires. The scheduler hands out the groups and single tests
    in that order (pytest_configure turns off xdist's reordering by group size)."""
    if not getattr(config.option, "loadgroup", False):
        return (yield)
    plan = xdist_plan(items)
    for item in items:  # before xdist's own hook, which reads the marks
        group = plan[_module(item)][1]
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(name=group))
    result = yield
    items[:] = sorted(items, key=lambda item: plan[_module(item)][0])  # stable
    for item in items:
        group = plan[_module(item)][1]
        if group is not None and not item.nodeid.endswith(f"@{group}"):
            _append_group(item, group)
    return result


def _append_group(item: pytest.Item, group: str) -> None:
    """Give the node id the "@group" suffix by which the loadgroup scheduler groups the tests.

    xdist's worker hook sets it by writing ``item._nodeid``, which pytest 9.2 no longer reads (its
    node ids are structured, ``item._id``): the groups were silently ignored and every test went
    out alone (pytest-dev/pytest-xdist#1386). Remove this once a fixed xdist is released."""
    nodeid = f"{item.nodeid}@{group}"
    structured = getattr(item, "_id", None)
    if structured is not None and hasattr(type(structured), "parse"):
        item._id = type(structured).parse(nodeid)
    else:
        item._nodeid = nodeid


def pytest_configure(config: pytest.Config) -> None:
    # --dist loadgroup would otherwise hand out the groups by their number of tests, largest
    # first; the order the collection hook gives (longest work first) balances better.
    if getattr(config.option, "dist", "no") == "loadgroup":
        config.option.loadscopereorder = False


@pytest.fixture(scope="session", autouse=True)
def _session_cwd(tmp_path_factory) -> Iterator[None]:
    """Session and module fixtures run in a private directory too (tests run in their tmp_path):
    nothing a fixture writes by a relative path (MLflow's ./mlruns...) lands in the checkout,
    shared by the xdist workers."""
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("session-cwd"))
    try:
        yield
    finally:
        os.chdir(old)


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
    with new_pg_database("mlgov_test") as url:
        yield url


def forget_engines(fragment: str) -> None:
    """Dispose and forget MLflow's cached engines whose URL contains ``fragment`` (so that the
    database can be copied or dropped: PostgreSQL copies a template only while nobody is on it)."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    from mlflow_governance.core.store import GovernedSqlAlchemyStore

    for cls in {RegistryStore, TrackingStore, GovernedSqlAlchemyStore}:
        engines = getattr(cls, "_engine_map", None) or {}
        for uri, eng in list(engines.items()):
            if fragment in uri:
                eng.dispose()
                del engines[uri]


@pytest.fixture(scope="session")
def pg_template(tmp_path_factory) -> Iterator[str]:
    """The name of a PostgreSQL database migrated for MLflow and governance (tracking, registry
    and governance tables), copied by `new_pg_database`. A copy takes a fraction of a second; a
    server or store on an empty database first runs MLflow's whole migration history (some 7 CPU s
    per server). Tests of migrating an empty database (test_server_databases, the README) do not use it."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    from mlflow_governance.core.plugin import governed_store_builder

    with new_pg_database("mlgov_template") as url:
        TrackingStore(url, str(tmp_path_factory.mktemp("pg-template-artifacts")))  # experiment 0's root
        governed_store_builder("governed-" + url)
        name = url.rsplit("/", 1)[1]
        forget_engines(name)
        yield name


@contextmanager
def new_pg_database(prefix: str, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of ``template`` when given; dropped afterwards): its URL."""
    import sqlalchemy as sa

    name = db_name(prefix)
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        forget_engines(name)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated MLflow + governance SQLite database, copied by `fresh_sqlite`."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    from mlflow_governance.core.plugin import governed_store_builder

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    TrackingStore(f"sqlite:///{path}", str(path.parent / "artifacts"))
    governed_store_builder(f"governed-sqlite:///{path}")
    forget_engines(str(path))
    return path


@pytest.fixture
def fresh_sqlite(sqlite_template, tmp_path) -> Path:
    """A private, already migrated SQLite database file for one test."""
    path = tmp_path / "mlflow.db"
    shutil.copy(sqlite_template, path)
    return path


def _grant_all(registry_uri: str) -> None:
    from mlflow_governance.client.governance import GovernanceClient

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
