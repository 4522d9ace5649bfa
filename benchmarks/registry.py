"""What governance costs on the registry: the governed store next to MLflow's own SqlAlchemyStore.

Same machine, same run, fresh SQLite files (and the local PostgreSQL when reachable). Measures
ordinary registry writes and reads that governance must not slow down much, and the price of a
governed transition (checks, tags, alias and one hash-chained audit row in one transaction)
next to the plain tag write a user would otherwise do. Prints a table; nothing is asserted.

    .venv/bin/python benchmarks/registry.py [--n 200] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable

from mlflow.entities.model_registry import RegisteredModelTag
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

from mlflow_governance.core import engine
from mlflow_governance.core.plugin import governed_store_builder
from mlflow_governance.core.store import GovernedSqlAlchemyStore


def timed(fn: Callable[[int], object], n: int) -> float:
    """Operations per second over ``n`` calls."""
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def bench(plain: SqlAlchemyStore, governed: GovernedSqlAlchemyStore, n: int) -> list[tuple[str, float, float]]:
    rows = []
    for store in (plain, governed):
        store.create_registered_model("bench")
    ops = {
        "create_model_version": lambda s: (lambda i: s.create_model_version("bench", "s3://b/m")),
        "set_registered_model_tag": lambda s: (lambda i: s.set_registered_model_tag("bench", RegisteredModelTag("k", str(i)))),
        "get_registered_model": lambda s: (lambda i: s.get_registered_model("bench")),
        "get_model_version": lambda s: (lambda i: s.get_model_version("bench", 1 + i % 10)),
    }
    for name, make in ops.items():
        rows.append((name, timed(make(plain), n), timed(make(governed), n)))
    # A governed transition versus the plain tag write it replaces.
    os.environ["MLGOV_USER"] = "admin"
    engine.grant_role(governed, "owner", "ModelOwner")
    engine.grant_role(governed, "eng", "ModelDataEngineer")
    engine.grant_role(governed, "appr", "ModelApprover")
    models = [f"gov-{uuid.uuid4().hex[:8]}" for _ in range(n)]
    os.environ["MLGOV_USER"] = "owner"
    initiate_rate = timed(lambda i: engine.initiate(governed, models[i], "bench"), n)
    os.environ["MLGOV_USER"] = "appr"
    approve_rate = timed(lambda i: engine.act(governed, models[i], "approve"), n)
    os.environ["MLGOV_USER"] = "eng"
    field_rate = timed(lambda i: engine.set_field(governed, models[i], "training_data_asset", "file:///d"), n)
    plain_tag = timed(lambda i: plain.set_registered_model_tag("bench", RegisteredModelTag("stage", str(i))), n)
    rows.append(("stage change: plain tag vs governed approve", plain_tag, approve_rate))
    rows.append(("field: plain tag vs governed set_field", plain_tag, field_rate))
    rows.append(("new model: create vs governed initiate",
                 timed(lambda i: plain.create_registered_model(f"p-{uuid.uuid4().hex[:8]}"), n), initiate_rate))
    start = time.perf_counter()
    verdict = engine.verify_audit(governed)
    rows.append((f"audit verify ({verdict.rows} rows), rows/s", float("nan"), verdict.rows / (time.perf_counter() - start)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    backends = []
    tmp = tempfile.mkdtemp(prefix="mlgov-bench-")
    backends.append(("sqlite", f"sqlite:///{tmp}/plain.db", f"governed-sqlite:///{tmp}/governed.db", None))
    if not args.no_postgres:
        import sqlalchemy as sa

        admin_url = os.environ.get("MLGOV_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
            names = [f"mlgov_bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
            with admin.connect() as conn:
                for name in names:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            base = admin_url.rsplit("/", 1)[0]
            backends.append(("postgresql", f"{base}/{names[0]}", f"governed-{base}/{names[1]}", (admin, names)))
        except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
            print(f"(PostgreSQL skipped: {exc.__class__.__name__}: {exc})")
    print(f"{'backend':<11} {'operation':<48} {'MLflow ops/s':>13} {'governed ops/s':>15} {'ratio':>6}")
    for label, plain_uri, governed_uri, cleanup in backends:
        try:
            rows = bench(SqlAlchemyStore(plain_uri), governed_store_builder(governed_uri), args.n)
            for name, a, b in rows:
                ratio = "" if a != a else f"{b / a:5.2f}"  # NaN check
                a_txt = "-" if a != a else f"{a:13.0f}"
                print(f"{label:<11} {name:<48} {a_txt:>13} {b:15.0f} {ratio:>6}")
        finally:
            if cleanup:
                admin, names = cleanup
                for store_engine in list(SqlAlchemyStore._engine_map.values()):
                    store_engine.dispose()
                with admin.connect() as conn:
                    for name in names:
                        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(f"n={args.n} calls per operation, one run, this machine")


if __name__ == "__main__":
    main()
