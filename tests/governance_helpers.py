"""Walk a governed model through the lifecycle in tests, each step as its role's user."""

from __future__ import annotations

from mlflow import MlflowClient

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from tests.conftest import ROLE_USER, acting

# Field values each working stage fills (a real training run fills the development ones).
DEFAULT_FIELDS = {
    wf.DATA_ACQUISITION: {
        "training_data_asset": "file:///data/training.parquet",
        "training_data_quality_flag": "acceptable",
    },
    wf.APPROVED_FOR_DEVELOPMENT: {
        "development_system": "scikit-learn pipeline",
        "training_data_statistics": "runs:/r/training_data_statistics.json",
        "drift_detection_model": "runs:/r/drift_detection_model",
        "model_quality": "roc_auc=0.81",
        "experiment_file": "runs:/r/leaderboard.csv",
    },
    wf.APPROVED_FOR_VALIDATION: {
        "validation_report": "runs:/v/report.html",
        "validation_dataset": "file:///v.parquet",
        "validation_verdict": "pass",
    },
    wf.APPROVED_FOR_DEPLOYMENT: {
        "endpoint": "http://127.0.0.1:5001/invocations",
        "deployment_space": "staging",
        "deployment_platform": "mlflow-governance sidecar",
    },
    wf.MODEL_DEPLOYMENT_COMPLETED: {"moved_to_production": "yes"},
    wf.APPROVED_FOR_PRODUCTIONIZATION: {
        "wrapper_endpoint": "http://127.0.0.1:5002/score",
        "wrapper_name": "delay-wrapper",
        "monitoring_url": "http://127.0.0.1:5000/#/experiments/1",
    },
}

# The happy path: (stage, action, scope) in order.
PATH = [row for row in wf.TRANSITIONS if row.action in (wf.APPROVE, wf.SUBMIT) and row.dest != row.source]


def fields_for(stage: str, model: str, version: int | None) -> dict[str, str]:
    fields = dict(DEFAULT_FIELDS.get(stage, {}))
    if stage == wf.APPROVED_FOR_DEVELOPMENT and version is not None:
        fields["model_asset"] = f"models:/{model}/{version}"
    return fields


def new_version(model: str, tmp_dir) -> int:
    """Register a version of ``model`` (the registry only needs a source location)."""
    return int(MlflowClient().create_model_version(model, source=str(tmp_dir)).version)


def initiate(client: GovernanceClient, model: str) -> str:
    with acting(ROLE_USER[wf.MODEL_OWNER]):
        return client.initiate(model, use_case="flight delay prediction", risk_tier="high")


def step(client: GovernanceClient, model: str, version: int | None = None) -> dict:
    """Take the one happy-path step the entity's current stage waits for."""
    status = client.status(model, version)
    stage = status["version"]["stage"] if version is not None else status["stage"]
    scope = wf.VERSION_SCOPE if version is not None else wf.MODEL_SCOPE
    row = next(r for r in PATH if r.source == stage and r.scope == scope)
    with acting(ROLE_USER[row.role]):
        return client.transition(model, row.action, version, fields_for(stage, model, version))


def walk_model_to(client: GovernanceClient, model: str, stage: str) -> None:
    """From a new model to ``stage`` (a model-scope stage)."""
    initiate(client, model)
    while client.status(model)["stage"] != stage:
        step(client, model)


def walk_version_to(client: GovernanceClient, model: str, stage: str, tmp_dir, initiate_model: bool = True) -> int:
    """A new version of a model approved for development, walked to ``stage``."""
    if initiate_model:
        walk_model_to(client, model, wf.APPROVED_FOR_DEVELOPMENT)
    version = new_version(model, tmp_dir)
    while client.status(model, version)["version"]["stage"] != stage:
        step(client, model, version)
    return version
