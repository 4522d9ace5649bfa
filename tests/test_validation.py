"""Independent validation: ``mlflow run . -e validate`` / ``mlgov validate`` on a trained version.

The session's trained version (January and February flights) is approved for validation and
validated on March, a month its developer never saw: the figures are checked against a direct
scikit-learn computation on the same rows, the report against the figures, the governance record
against the run; every refusal leaves no run, no artifact and no configuration change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from mlflow import MlflowClient

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core.monitor_config import default_config, load_config
from tests.conftest import acting
from tests.plugins.training_fixtures import REPO

VALIDATION_MONTH = 3
LENIENT = {
    "quality": {"min_labels": 100, "thresholds": {"roc_auc": 0.5}},
    "fairness": {"threshold": 0.05, "min_group_size": 100,
                 "attributes": [{"feature": "ORIGIN_AIRPORT", "monitored": ["EWR"], "reference": ["JFK"]}]},
    "drift": {"max_share_drifted": 1.0},
    "estimated_accuracy": {"max_drop": 1.0},
}
STRICT_QUALITY = {**LENIENT, "quality": {"min_labels": 100, "thresholds": {"roc_auc": 0.999}}}


@pytest.fixture(scope="session")
def march_parquet(tmp_path_factory) -> Path:
    """Every March flight, acquisition-shaped (cancelled flights keep a missing DELAYED)."""
    from mlflow_governance.airline.flights import source_tables

    flights, airports = source_tables([VALIDATION_MONTH])
    path = tmp_path_factory.mktemp("validation-data") / "march.parquet"
    flights.merge(airports, on="FLIGHT_ID").to_parquet(path, index=False)
    return path


@pytest.fixture
def for_validation(trained_registry):
    """The trained version, approved by the owner for validation."""
    with acting("olivia"):
        GovernanceClient().transition(trained_registry.model, "approve", trained_registry.version,
                                      comment="ready for independent validation")
    return trained_registry


@pytest.fixture(autouse=True)
def _quiet_downloads(monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def write_config(tmp_path: Path, config: dict, name: str = "monitors.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config) if name.endswith(".json") else yaml.safe_dump(config))
    return path


def mlgov(*args: str, user: str | None = "victor"):
    from mlflow_governance.cli.main import cli

    with acting(user):
        return CliRunner().invoke(cli, list(args))


def all_runs(reg) -> list:
    client = MlflowClient(reg.tracking_uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids)


def version_tags(reg) -> dict[str, str]:
    return MlflowClient(reg.tracking_uri, reg.registry_uri).get_model_version(reg.model, str(reg.version)).tags


def download(uri: str, tmp_path: Path) -> Path:
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / os.urandom(4).hex())))


def test_mlflow_run_validate_on_a_later_month(for_validation, march_parquet, tmp_path):
    reg = for_validation
    config = write_config(tmp_path, LENIENT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    env.update(reg.env(), MLGOV_USER="victor", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), "run", str(REPO), "-e", "validate", "--env-manager", "local",
         "--experiment-name", "validation", "-P", f"model={reg.model}", "-P", f"version={reg.version}",
         "-P", f"data={march_parquet}", "-P", f"config={config}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    status = GovernanceClient().status(reg.model, reg.version)["version"]
    assert status["stage"] == "Model Validation Completed"
    fields = status["fields"]
    assert fields["validation_verdict"] == "pass"
    assert fields["validation_dataset"] == str(march_parquet)
    run_id = fields["validation_report"].split("/")[1]
    run = MlflowClient().get_run(run_id)
    assert run.data.tags["mlgov_validation_verdict"] == "pass"
    report = json.loads(download(f"runs:/{run_id}/validation/report.json", tmp_path).read_text())

    # The quality figures are scikit-learn's on the same rows, with the version from the registry.
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    from mlflow_governance.training.data import feature_frame

    frame = pd.read_parquet(march_parquet)
    labelled = frame[frame["DELAYED"].notna()]
    model = mlflow.sklearn.load_model(reg.model_uri)
    proba = model.predict_proba(feature_frame(labelled))[:, 1]
    pred, truth = (proba >= 0.5).astype(int), labelled["DELAYED"].astype(int).to_numpy()
    expected = {
        "quality.accuracy": accuracy_score(truth, pred), "quality.precision": precision_score(truth, pred),
        "quality.recall": recall_score(truth, pred), "quality.f1": f1_score(truth, pred),
        "quality.roc_auc": roc_auc_score(truth, proba),
    }
    for key, value in expected.items():
        assert report["figures"][key]["value"] == pytest.approx(value, abs=1e-9), key
        assert run.data.metrics[key] == pytest.approx(value, abs=1e-9), key
    # The estimated accuracy (no labels used) is close to the accuracy measured with them.
    estimated = report["figures"]["estimated_accuracy.value"]["value"]
    assert abs(estimated - expected["quality.accuracy"]) < 0.05
    assert report["figures"]["estimated_accuracy.drop"]["value"] == pytest.approx(
        json.loads(download(fields["training_data_statistics"], tmp_path).read_text())["training_accuracy"]["value"]
        - estimated)
    for key in ("fairness.ORIGIN_AIRPORT.disparate_impact", "drift.share_drifted", "drift.DEPARTURE_DELAY.score"):
        assert key in report["figures"] and key in run.data.metrics
    # The configuration in force is the one given, recorded on the version with its digest.
    digest = load_config(config).digest()
    assert report["config_digest"] == digest == version_tags(reg)["mlgov.monitors.digest"]
    assert run.data.params["monitor_config_digest"] == digest
    rows = GovernanceClient().audit(reg.model)
    monitors_row = next(r for r in rows if r["action"] == "set_monitors")
    assert monitors_row["actor"] == "victor" and monitors_row["fields"]["monitor_config_digest"] == digest
    submit = rows[-1]
    assert submit["action"] == "submit" and submit["actor"] == "victor" and digest in submit["comment"]
    # The data is the run's input; the HTML report and evidently's own report are artifacts.
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["validation"]
    names = {a.path for a in MlflowClient().list_artifacts(run_id, "validation")}
    assert {"validation/report.html", "validation/report.json", "validation/evidently_drift.html"} <= names
    assert GovernanceClient().verify_audit()["ok"]


def test_a_breach_blocks_the_submission_until_overridden(for_validation, march_parquet, tmp_path):
    reg = for_validation
    config = write_config(tmp_path, STRICT_QUALITY)
    refused = mlgov("validate", "--model", reg.model, "--version", str(reg.version), "--data", str(march_parquet),
                    "--config", str(config))
    assert refused.exit_code == 5, refused.output
    assert "breached: quality.roc_auc=" in refused.output and "--override-comment" in refused.output
    status = GovernanceClient().status(reg.model, reg.version)["version"]
    assert status["stage"] == "Approved for Validation"
    breached_runs = [r for r in all_runs(reg) if r.data.tags.get("mlgov_validation_verdict") == "breach"]
    assert len(breached_runs) == 1  # the evidence is kept
    report = json.loads(download(f"runs:/{breached_runs[0].info.run_id}/validation/report.json", tmp_path).read_text())
    assert report["verdict"] == "breach" and report["figures"]["quality.roc_auc"]["verdict"] == "breach"

    done = mlgov("validate", "--model", reg.model, "--version", str(reg.version), "--data", str(march_parquet),
                 "--override-comment", "AUC bound is aspirational; accepted by the model risk committee")
    assert done.exit_code == 0, done.output
    status = GovernanceClient().status(reg.model, reg.version)["version"]
    assert status["stage"] == "Model Validation Completed" and status["fields"]["validation_verdict"] == "override"
    submit = GovernanceClient().audit(reg.model)[-1]
    assert submit["fields"]["validation_verdict"] == "override"
    assert "accepted by the model risk committee" in submit["comment"] and "quality.roc_auc=" in submit["comment"]
    from mlflow_governance.evidence.factsheet import render_markdown

    sheet = render_markdown(GovernanceClient().status(reg.model), GovernanceClient().audit(reg.model))
    assert "override" in sheet and "accepted by the model risk committee" in sheet


def test_the_override_is_refused_by_governance_without_a_comment(for_validation):
    reg = for_validation
    with acting("victor"), pytest.raises(Exception) as exc:
        GovernanceClient().transition(reg.model, "submit", reg.version, {
            "validation_report": "runs:/x/validation/report.html", "validation_dataset": "march",
            "validation_verdict": "override"})
    assert "needs a comment" in str(exc.value)


@pytest.mark.parametrize(
    "case",
    ["developer", "wrong_role", "wrong_stage", "missing_data", "no_columns", "bad_config", "not_parquet"],
)
def test_refusals_leave_nothing_behind(case, trained_registry, march_parquet, tmp_path):
    reg = trained_registry
    if case != "wrong_stage":
        with acting("olivia"):
            GovernanceClient().transition(reg.model, "approve", reg.version, comment="ok")
    user, data, extra, code, says = "victor", str(march_parquet), [], 3, None
    if case == "developer":
        with acting("admin"):
            GovernanceClient().grant("devi", "ModelValidator")
        user, says = "devi", "developed this version"
    elif case == "wrong_role":
        user, says = "olivia", "ModelValidator role is required"
    elif case == "wrong_stage":
        says = "'Model Development Completed'"
    elif case == "missing_data":
        data, code, says = str(tmp_path / "nope.parquet"), 2, "does not exist"
    elif case == "no_columns":
        data = str(tmp_path / "thin.parquet")
        pd.read_parquet(march_parquet).drop(columns=["CARRIER", "DISTANCE"]).to_parquet(data)
        code, says = 2, "lacks the model's column(s) DISTANCE, CARRIER"
    elif case == "not_parquet":
        data = str(tmp_path / "notes.parquet")
        Path(data).write_text("not parquet")
        code, says = 2, "not a readable Parquet file"
    elif case == "bad_config":
        extra = ["--config", str(write_config(tmp_path, {"quality": {"thresholds": {"rocauc": 0.8}}}))]
        code, says = 2, "quality.thresholds.rocauc"
    before = {r.info.run_id for r in all_runs(reg)}
    audit_before = len(GovernanceClient().audit(reg.model))
    result = mlgov("validate", "--model", reg.model, "--version", str(reg.version), "--data", data, *extra, user=user)
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], result.output
    assert {r.info.run_id for r in all_runs(reg)} == before
    assert "mlgov.monitors" not in version_tags(reg)
    rows = GovernanceClient().audit(reg.model)
    assert all(r["outcome"] != "allowed" for r in rows[audit_before:])


def test_monitors_show_and_set(for_validation, tmp_path):
    reg = for_validation
    shown = mlgov("monitors", "show", reg.model, "--version", str(reg.version))
    assert shown.exit_code == 0 and default_config().digest() in shown.output and "defaults" in shown.output
    config = write_config(tmp_path, STRICT_QUALITY, "strict.json")
    refused = mlgov("monitors", "set", reg.model, "--version", str(reg.version), "--config", str(config), user="mona")
    assert refused.exit_code == 3 and "Approved for Validation" in refused.output
    done = mlgov("monitors", "set", reg.model, "--version", str(reg.version), "--config", str(config))
    digest = load_config(config).digest()
    assert done.exit_code == 0 and digest in done.output
    shown = mlgov("monitors", "show", reg.model, "--version", str(reg.version), user="olivia")
    assert shown.exit_code == 0 and digest in shown.output and "recorded on the version" in shown.output
    assert json.loads(shown.output.split("\n", 2)[2])["quality"]["thresholds"]["roc_auc"] == 0.999
    row = GovernanceClient().audit(reg.model)[-1]
    assert row["action"] == "set_monitors" and row["actor"] == "victor"
    assert json.loads(row["fields"]["monitor_config"])["quality"]["thresholds"]["roc_auc"] == 0.999
    assert GovernanceClient().verify_audit()["ok"]  # the replay reproduces the configuration tags


CHROMIUM_OK = all(__import__("shutil").which(b) for b in ("chromium", "chromedriver"))


@pytest.mark.skipif(not CHROMIUM_OK, reason="Debian's chromium and chromium-driver are not installed")
def test_the_report_opens_in_chromium(for_validation, march_parquet, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    reg = for_validation
    done = mlgov("validate", "--model", reg.model, "--version", str(reg.version), "--data", str(march_parquet),
                 "--config", str(write_config(tmp_path, LENIENT)), "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    page = download(result["fields"]["validation_report"], tmp_path)
    html = page.read_text()
    for key, figure in result["figures"].items():
        assert f'data-key="{key}"' in html
        if figure["value"] is not None:
            assert f"{figure['value']:.4f}" in html
    assert html.count("data:image/png;base64,") >= 2 and "<iframe" in html

    opts = webdriver.ChromeOptions()
    opts.binary_location = __import__("shutil").which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1300,2400"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(__import__("shutil").which("chromedriver")), options=opts)
    try:
        driver.get(page.as_uri())
        assert driver.find_element(By.ID, "verdict").text == "Verdict: PASS"
        for image in ("confusion-matrix", "roc-curve"):
            element = driver.find_element(By.ID, image)
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", element) > 100
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        pixels = np.frombuffer(shot.read_bytes(), dtype=np.uint8)
        assert shot.stat().st_size > 20_000 and pixels.std() > 0
    finally:
        driver.quit()
