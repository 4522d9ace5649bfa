"""Session fixtures for the training tests (shared with later stages).

* ``training_parquet``: an acquisition-shaped Parquet of 10,000 flights sampled (seeded) from
  January and February, unlabeled (cancelled) rows included.
* ``training_holdout``: 5,000 other flights of the same months, never in that Parquet.
* ``trained_model``: a governed SQLite registry where ``mlflow run <repo> -e train -P quick=true``
  really ran (as devi, the ModelDeveloper) and submitted version 1 of the delay model to Model
  Development Completed. Treat it as read-only.
* ``approved_model``: (per test, on ``sqlite_registry``) a new model walked to Approved for
  Development with ``training_parquet`` as its training_data_asset.
* ``training_cli``: ``invoke(*args, user="devi")`` runs ``mlgov`` with the training commands in
  process (click's CliRunner) as ``user``.
* ``trained_registry``: a private copy of that registry for one test, with MLFLOW_TRACKING_URI and
  MLFLOW_REGISTRY_URI set to it, for tests that move the version on (validation, deployment...).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytest

# Star-imported by tests/conftest.py: only the fixtures are exported.
__all__ = [
    "training_months_frame",
    "training_parquet",
    "training_holdout",
    "trained_model",
    "trained_registry",
    "approved_model",
    "training_cli",
]

REPO = Path(__file__).resolve().parents[2]
TRAINING_MONTHS = (1, 2)
TRAINING_ROWS = 10_000
HOLDOUT_ROWS = 5_000
SAMPLE_SEED = 7
TRAINED_MODEL_NAME = "flight-delay"
FIXTURE_EXPERIMENT = "training-fixture"


@dataclass(frozen=True)
class TrainedModel:
    """Where the session's trained, submitted model version lives."""

    db_path: Path
    tracking_uri: str
    registry_uri: str
    model: str
    version: int
    run_id: str
    data_path: Path
    experiment_id: str

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model}/{self.version}"

    def env(self) -> dict[str, str]:
        """MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI pointing at this registry."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_REGISTRY_URI": self.registry_uri}


@contextmanager
def _env(**values: str | None) -> Iterator[None]:
    """Set (or, with None, remove) environment variables for a block."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def approve_for_development(registry_uri: str, model: str, data_uri: str) -> None:
    """Initiate ``model`` and walk it to Approved for Development, each step as its role's user."""
    from mlflow_governance.client.governance import GovernanceClient
    from tests.conftest import acting

    client = GovernanceClient(registry_uri)
    with acting("olivia"):
        client.initiate(model, use_case="flight delay prediction")
    with acting("adam"):
        client.transition(model, "approve")
    with acting("erin"):
        client.transition(
            model, "submit", fields={"training_data_asset": data_uri, "training_data_quality_flag": "acceptable"}
        )
    with acting("olivia"):
        client.transition(model, "approve")


def mlflow_run_train(
    env: dict[str, str], cwd: Path, model: str, data: str | None = None, quick: bool = True, extra: tuple = ()
) -> subprocess.CompletedProcess:
    """``mlflow run <repo> -e train --env-manager local`` as a real subprocess (venv on PATH)."""
    bin_dir = str(Path(sys.executable).parent)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    full_env.update(env)
    full_env["PATH"] = bin_dir + os.pathsep + full_env.get("PATH", "")
    full_env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    cmd = [
        os.path.join(bin_dir, "mlflow"),
        "run",
        str(REPO),
        "-e",
        "train",
        "--env-manager",
        "local",
        "-P",
        f"model={model}",
        "-P",
        f"quick={'true' if quick else 'false'}",
        *extra,
    ]
    if data is not None:
        cmd += ["-P", f"data={data}"]
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def training_months_frame() -> pd.DataFrame:
    """Every January/February flight, source tables merged on FLIGHT_ID (acquisition's columns)."""
    from mlflow_governance.airline.flights import source_tables

    flights, airports = source_tables(list(TRAINING_MONTHS))
    return flights.merge(airports, on="FLIGHT_ID")


@pytest.fixture(scope="session")
def training_parquet(training_months_frame, tmp_path_factory) -> Path:
    """Acquisition-shaped Parquet: 10,000 seeded-sampled January/February flights."""
    sample = training_months_frame.sample(n=TRAINING_ROWS, random_state=SAMPLE_SEED).sort_values("FLIGHT_ID")
    path = tmp_path_factory.mktemp("training-data") / "training.parquet"
    sample.reset_index(drop=True).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="session")
def training_holdout(training_months_frame, training_parquet) -> pd.DataFrame:
    """5,000 flights of the same months that are not in ``training_parquet`` (raw columns)."""
    used = set(pd.read_parquet(training_parquet, columns=["FLIGHT_ID"])["FLIGHT_ID"])
    rest = training_months_frame[~training_months_frame["FLIGHT_ID"].isin(used)]
    return rest.sample(n=HOLDOUT_ROWS, random_state=SAMPLE_SEED + 1).reset_index(drop=True)


@pytest.fixture(scope="session")
def trained_model(sqlite_template, training_parquet, tmp_path_factory) -> TrainedModel:
    """A governed registry where ``mlflow run -e train -P quick=true`` submitted version 1."""
    from mlflow import MlflowClient

    from mlflow_governance.client.governance import GovernanceClient
    from tests.conftest import _grant_all

    workdir = tmp_path_factory.mktemp("trained-model")
    db = workdir / "mlflow.db"
    shutil.copy(sqlite_template, db)
    tracking_uri, registry_uri = f"sqlite:///{db}", f"governed-sqlite:///{db}"
    cleared = {k: None for k in os.environ if k.startswith(("MLFLOW_", "MLGOV_"))}
    with _env(**cleared, MLGOV_ADMIN="admin"):
        _grant_all(registry_uri)
        approve_for_development(registry_uri, TRAINED_MODEL_NAME, training_parquet.as_uri())
        experiment_id = MlflowClient(tracking_uri).create_experiment(
            FIXTURE_EXPERIMENT, artifact_location=(workdir / "artifacts").as_uri()
        )
        done = mlflow_run_train(
            {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": registry_uri, "MLGOV_USER": "devi"},
            workdir,
            TRAINED_MODEL_NAME,
            data=str(training_parquet),
            extra=("--experiment-name", FIXTURE_EXPERIMENT),
        )
        if done.returncode != 0:
            pytest.fail(
                f"mlflow run -e train failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
            )
        versions = GovernanceClient(registry_uri).status(TRAINED_MODEL_NAME)["versions"]
        version = max(v["version"] for v in versions)
        run_id = MlflowClient(tracking_uri, registry_uri).get_model_version(TRAINED_MODEL_NAME, str(version)).run_id
    return TrainedModel(
        db, tracking_uri, registry_uri, TRAINED_MODEL_NAME, version, run_id, training_parquet, experiment_id
    )


@pytest.fixture
def trained_registry(trained_model, tmp_path, monkeypatch) -> TrainedModel:
    """A private copy of the trained model's registry for one test; the env points at it."""
    db = tmp_path / "trained.db"
    shutil.copy(trained_model.db_path, db)
    copy = replace(trained_model, db_path=db, tracking_uri=f"sqlite:///{db}", registry_uri=f"governed-sqlite:///{db}")
    for key, value in copy.env().items():
        monkeypatch.setenv(key, value)
    return copy


@pytest.fixture
def approved_model(sqlite_registry, training_parquet) -> str:
    """A new model in Approved for Development whose training_data_asset is ``training_parquet``."""
    from tests.conftest import unique

    name = unique("delay")
    approve_for_development(sqlite_registry, name, training_parquet.as_uri())
    return name


@pytest.fixture
def training_cli():
    """``invoke(*args, user="devi")``: ``mlgov`` with the training commands, in process, as ``user``."""
    import click
    from click.testing import CliRunner

    from mlflow_governance.cli.common import GovernanceGroup
    from mlflow_governance.cli.training import register
    from tests.conftest import acting

    @click.group(cls=GovernanceGroup)
    def cli() -> None:
        pass

    register(cli)

    def invoke(*args: str, user: str | None = "devi"):
        with acting(user):
            return CliRunner().invoke(cli, list(args))

    return invoke
