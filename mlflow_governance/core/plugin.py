"""The composition root of the registry store plugin: the governed store with its governor.

MLflow's entry point group ``mlflow.model_registry_store`` points here (see ``setup.py``), and so
does everything else that opens a governed store: this is the one place that hands the engine to
the store, so `store` itself never imports the engine.
"""

from __future__ import annotations

from mlflow_governance.core import engine
from mlflow_governance.core.store import GovernedSqlAlchemyStore


def governed_store_builder(store_uri: str | None = None, tracking_uri: str | None = None) -> GovernedSqlAlchemyStore:
    """Entry-point target: MLflow calls it with ``store_uri`` (and ``tracking_uri`` when it can)."""
    return GovernedSqlAlchemyStore(store_uri=store_uri, tracking_uri=tracking_uri, governor=engine)
