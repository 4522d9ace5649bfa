"""Session fixtures for the training tests (shared with later stages).

* ``training_parquet``: an acquisition-shaped Parquet of 10,000 flights sampled (seeded) from
  January and February, unlabeled (cancelled) rows included.
* ``training_holdout``: 5,000 other flights of the same months, never in that Parquet.
* ``trained_model``: a governed SQLite registry where ``mlflow run <repo> -e train -P quick=true``
  really ran (as devi, the ModelDeveloper) and submitted version 1 of the delay model to Model
  Development Completed. Treat it as read-only: it is made once per test run, not per xdist
  worker (`_train_in_background` starts it as the session starts, in the directory the workers
  share, while both workers run other tests; the fixture waits for it). The Parquet it was
  trained on (``training_parquet``) is shared the same way.
* ``approved_model``: (per test, on ``sqlite_registry``) a new model walked to Approved for
  Development with ``training_parquet`` as its training_data_asset.
* ``training_cli``: ``invoke(*args, user="devi")`` runs ``mlgov`` with the training commands in
  process (click's CliRunner) as ``user``.
* ``trained_registry``: a private copy of that registry for one test, with MLFLOW_TRACKING_URI and
  MLFLOW_REGISTRY_URI set to it, for tests that move the version on (validation, deployment...).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytest

# Star-imported by tests/conftest.py: only the fixtures are exported.
__all__ = [
    "_train_in_background",
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
    cmd, full_env = mlflow_run_train_command(env, model, data, quick, extra)
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=900)


def mlflow_run_train_command(
    env: dict[str, str], model: str, data: str | None = None, quick: bool = True, extra: tuple = ()
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of `mlflow_run_train`."""
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
    return cmd, full_env


@pytest.fixture(scope="session")
def training_months_frame() -> pd.DataFrame:
    """Every January/February flight, source tables merged on FLIGHT_ID (acquisition's columns)."""
    from mlflow_governance.airline.flights import source_tables

    flights, airports = source_tables(list(TRAINING_MONTHS))
    return flights.merge(airports, on="FLIGHT_ID")


# --- made once per test run, shared by the xdist workers --------------------------------------


def _shared_root(tmp_path_factory) -> Path:
    """The directory every worker of this test run shares (the parent of each worker's basetemp)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    """An exclusive lock across the workers (flock on ``root/name.lock``)."""
    with open(root / f"{name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def training_parquet(training_months_frame, tmp_path_factory) -> Path:
    """Acquisition-shaped Parquet: 10,000 seeded-sampled January/February flights (one file per
    test run: the trained model records its path)."""
    root = _shared_root(tmp_path_factory)
    path = root / "training-data" / "training.parquet"
    with _locked(root, "training-data"):
        if not path.exists():
            sample = training_months_frame.sample(n=TRAINING_ROWS, random_state=SAMPLE_SEED).sort_values("FLIGHT_ID")
            path.parent.mkdir(exist_ok=True)
            partial = path.with_suffix(".partial")
            sample.reset_index(drop=True).to_parquet(partial, index=False)
            partial.rename(path)
    return path


@pytest.fixture(scope="session")
def training_holdout(training_months_frame, training_parquet) -> pd.DataFrame:
    """5,000 flights of the same months that are not in ``training_parquet`` (raw columns)."""
    used = set(pd.read_parquet(training_parquet, columns=["FLIGHT_ID"])["FLIGHT_ID"])
    rest = training_months_frame[~training_months_frame["FLIGHT_ID"].isin(used)]
    return rest.sample(n=HOLDOUT_ROWS, random_state=SAMPLE_SEED + 1).reset_index(drop=True)


TRAINING_DIR = "trained-model"
TRAINING_TIMEOUT = 900.0


def _start_training(root: Path, sqlite_template: Path, training_parquet: Path) -> subprocess.Popen | None:
    """Prepare the shared registry and start ``mlflow run -e train`` in the background, unless a
    worker already did; the started process (this worker's to stop), else None."""
    from mlflow import MlflowClient

    from tests.conftest import _grant_all

    workdir = root / TRAINING_DIR
    with _locked(root, TRAINING_DIR):
        if workdir.exists():
            return None
        workdir.mkdir()
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
        (workdir / "experiment.json").write_text(json.dumps({"experiment_id": experiment_id}))
        cmd, env = mlflow_run_train_command(
            {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": registry_uri, "MLGOV_USER": "devi"},
            TRAINED_MODEL_NAME, data=str(training_parquet), extra=("--experiment-name", FIXTURE_EXPERIMENT),
        )
        # The exit code lands in a file, so that any worker can wait for it.
        script = f"{shlex.join(cmd)} > out.log 2> err.log; echo $? > rc.partial && mv rc.partial rc"
        return subprocess.Popen(["/bin/sh", "-c", script], cwd=workdir, env=env, start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _uses_trained_model(session: pytest.Session) -> bool:
    return any("trained_model" in getattr(item, "fixturenames", ()) for item in session.items)


@pytest.fixture(scope="session", autouse=True)
def _train_in_background(request, tmp_path_factory) -> Iterator[None]:
    """As the session starts: the model training the later tests need, in the background, once per
    test run (only when a collected test needs it)."""
    if not _uses_trained_model(request.session):
        yield
        return
    started = _start_training(_shared_root(tmp_path_factory), request.getfixturevalue("sqlite_template"),
                              request.getfixturevalue("training_parquet"))
    yield
    if started is not None:  # another worker may still wait for it: let it finish (bounded)
        try:
            started.wait(TRAINING_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(started.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def trained_model(sqlite_template, training_parquet, tmp_path_factory) -> TrainedModel:
    """A governed registry where ``mlflow run -e train -P quick=true`` submitted version 1 (once per
    test run: waits for the training `_train_in_background` started, or starts it)."""
    from mlflow import MlflowClient

    from mlflow_governance.client.governance import GovernanceClient

    root = _shared_root(tmp_path_factory)
    _start_training(root, sqlite_template, training_parquet)  # nothing when it was started
    workdir = root / TRAINING_DIR
    deadline = time.monotonic() + TRAINING_TIMEOUT
    while not (workdir / "rc").exists():
        if time.monotonic() > deadline:
            pytest.fail(f"mlflow run -e train did not finish within {TRAINING_TIMEOUT:.0f} s (see {workdir})")
        time.sleep(0.5)
    code = int((workdir / "rc").read_text().strip() or "-1")
    if code != 0:
        pytest.fail(f"mlflow run -e train failed ({code}):\n{(workdir / 'out.log').read_text()[-3000:]}\n"
                    f"{(workdir / 'err.log').read_text()[-6000:]}")
    db = workdir / "mlflow.db"
    tracking_uri, registry_uri = f"sqlite:///{db}", f"governed-sqlite:///{db}"
    experiment_id = json.loads((workdir / "experiment.json").read_text())["experiment_id"]
    cleared = {k: None for k in os.environ if k.startswith(("MLFLOW_", "MLGOV_"))}
    with _env(**cleared):
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
