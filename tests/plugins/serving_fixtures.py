"""Session fixtures for serving and production monitoring (shared by later stages).

* ``production_model``: a private registry copy (SQLite) where the session's trained version has
  been walked to Ready to Use (owner approvals, a validation record, the deployment and monitoring
  fields) with the ``production`` alias bound. Treat it as read-only.
* ``production_registry``: a per-test private copy of it, with MLFLOW_TRACKING_URI and
  MLFLOW_REGISTRY_URI set to it.
* ``summer_flights`` / ``winter_flights``: acquisition-shaped frames of July and of January and
  February flights not in the training sample (for drifted and undrifted traffic).
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pandas as pd
import pytest

__all__ = ["production_model", "production_registry", "summer_flights", "winter_flights"]


@pytest.fixture(scope="session")
def production_model(trained_model, tmp_path_factory):
    from mlflow_governance.client.governance import GovernanceClient
    from mlflow_governance.core import workflow as wf
    from tests.conftest import ROLE_USER, acting
    from tests.governance_helpers import PATH, fields_for
    from tests.plugins.training_fixtures import _env

    db = tmp_path_factory.mktemp("production-model") / "mlflow.db"
    shutil.copy(trained_model.db_path, db)
    copy = replace(trained_model, db_path=db, tracking_uri=f"sqlite:///{db}", registry_uri=f"governed-sqlite:///{db}")
    with _env(**copy.env(), MLGOV_ADMIN="admin"):
        client = GovernanceClient(copy.registry_uri)
        while True:
            stage = client.status(copy.model, copy.version)["version"]["stage"]
            if stage == wf.READY_TO_USE:
                break
            row = next(r for r in PATH if r.source == stage and r.scope == wf.VERSION_SCOPE)
            with acting(ROLE_USER[row.role]):
                client.transition(copy.model, row.action, copy.version, fields_for(stage, copy.model, copy.version),
                                  comment="walked to production for the serving tests")
    return copy


@pytest.fixture
def production_registry(production_model, tmp_path, monkeypatch):
    db = tmp_path / "production.db"
    shutil.copy(production_model.db_path, db)
    copy = replace(production_model, db_path=db, tracking_uri=f"sqlite:///{db}", registry_uri=f"governed-sqlite:///{db}")
    for key, value in copy.env().items():
        monkeypatch.setenv(key, value)
    # The monitor's experiment, made here with its artifacts under the test's directory: created by
    # an in-process evaluation it would get MLflow's default root, ./mlruns of the project checkout.
    from mlflow import MlflowClient

    MlflowClient(copy.tracking_uri).create_experiment(f"{copy.model}-monitoring",
                                                      artifact_location=(tmp_path / "mlruns").as_uri())
    return copy


@pytest.fixture(scope="session")
def summer_flights() -> pd.DataFrame:
    """Every July flight (source tables joined), the month furthest from the winter training data."""
    from mlflow_governance.airline.flights import source_tables

    flights, airports = source_tables([7])
    return flights.merge(airports, on="FLIGHT_ID")


@pytest.fixture(scope="session")
def winter_flights(training_months_frame, training_parquet) -> pd.DataFrame:
    """January and February flights that are not in the training sample."""
    used = set(pd.read_parquet(training_parquet, columns=["FLIGHT_ID"])["FLIGHT_ID"])
    return training_months_frame[~training_months_frame["FLIGHT_ID"].isin(used)].reset_index(drop=True)
