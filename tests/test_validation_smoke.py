"""The UAT deployment: ``mlgov validate --smoke-test`` / ``--smoke-url`` (real processes, real HTTP).

The validator starts a staging sidecar of the version under validation (``mlgov serve --version N
--staging``, as themselves, with a payload database of its own), smoke-tests it over REST against
the validation's own predictions, records the result in the report, the run and the submission
comment, and stops it: afterwards neither the process nor its port is left. A failed smoke test
keeps the run as evidence and submits nothing (exit 7); a ``--smoke-url`` that is not a staging
sidecar of this version is refused before anything is written (exit 3).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from mlflow_governance.validation import smoke
from tests import test_validation
from tests.cli_in_process import mlgov as mlgov_in_process
from tests.conftest import acting, free_port
from tests.plugins.training_fixtures import REPO, _env
from tests.test_sidecar_support import MLGOV, copy_registry, run_sidecar, serve_args, sidecar_env
from tests.test_validation import LENIENT, all_runs, download, mlgov, version_tags, write_config

# The validation tests' fixtures: a month the developer never saw, the version approved for validation.
march_parquet = test_validation.march_parquet
for_validation = test_validation.for_validation


@pytest.fixture(autouse=True)
def _quiet_downloads(monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="module")
def small_body_sidecar(trained_model, tmp_path_factory):
    """A deployer's staging sidecar of the trained version (approved for validation in a registry
    of its own) whose body limit, 1,024 bytes, is too small for the smoke test's 20-row requests."""
    work = tmp_path_factory.mktemp("smoke-sidecar")
    registry = copy_registry(trained_model, work, "registry.db")
    with _env(MLGOV_ADMIN="admin"), acting("olivia"):
        GovernanceClient(registry.registry_uri).transition(registry.model, wf.APPROVE, registry.version,
                                                           comment="ready for validation")
    env = sidecar_env(registry.registry_uri, registry.tracking_uri, MLGOV_USER="dora")
    with run_sidecar(work / "run", env, "--model", registry.model, "--version", str(registry.version), "--staging",
                     "--max-body-bytes", "1024", *serve_args(workers=1)) as sidecar:
        yield sidecar


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_naming(text: str) -> list[str]:
    """Command lines of live processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def validator_env(reg) -> dict[str, str]:
    env = sidecar_env(reg.registry_uri, reg.tracking_uri, MLGOV_USER="victor")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    return env


def nothing_written(reg, runs_before: set[str], audit_before: int) -> None:
    assert {r.info.run_id for r in all_runs(reg)} == runs_before
    assert "mlgov.monitors" not in version_tags(reg)
    rows = GovernanceClient().audit(reg.model)
    assert all(r["outcome"] != "allowed" for r in rows[audit_before:])
    assert GovernanceClient().status(reg.model, reg.version)["version"]["stage"] == wf.APPROVED_FOR_VALIDATION


def test_the_staging_gate_serves_a_version_under_validation():
    """The validator's sidecar serves the version in the stage the validator finds it in."""
    assert wf.STAGING_STAGES[0] == wf.APPROVED_FOR_VALIDATION
    assert wf.find_transition(wf.APPROVED_FOR_VALIDATION, wf.SUBMIT, wf.VERSION_SCOPE).role == wf.MODEL_VALIDATOR


def test_validate_with_smoke_test_records_the_uat_deployment(for_validation, march_parquet, tmp_path):
    reg = for_validation
    config = write_config(tmp_path, LENIENT)
    done = mlgov_in_process("validate", "--model", reg.model, "--version", str(reg.version), "--data",
                            str(march_parquet), "--config", str(config), "--smoke-test", "--json",
                            cwd=tmp_path, env=validator_env(reg))
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["submitted"] is True and result["smoke_test"]["passed"] is True

    status = GovernanceClient().status(reg.model, reg.version)["version"]
    assert status["stage"] == wf.MODEL_VALIDATION_COMPLETED
    run_id = status["fields"]["validation_report"].split("/")[1]
    report = json.loads(download(f"runs:/{run_id}/validation/report.json", tmp_path).read_text())
    uat = report["smoke_test"]
    assert uat == result["smoke_test"]
    assert uat["passed"] is True and uat["failures"] == []
    assert uat["url"].startswith("http://127.0.0.1:")
    # Every body format answered the same predictions as the validation's own, one request id per row.
    assert uat["rows"] == smoke.SAMPLE_ROWS and uat["formats"] == list(smoke.FORMATS)
    assert uat["formats_matched"] == 4 and uat["max_abs_diff"] <= smoke.TOLERANCE
    checks = {c["check"]: c for c in uat["checks"]}
    for fmt in smoke.FORMATS:
        assert checks[f"POST /invocations ({fmt})"]["passed"] and checks[f"POST /invocations ({fmt})"][
            "http_status"] == 200
    assert checks["POST /invocations (malformed JSON)"]["http_status"] == 400
    assert "MALFORMED_JSON" in checks["POST /invocations (malformed JSON)"]["detail"]
    assert "UNKNOWN_COLUMN" in checks["POST /invocations (an unknown column)"]["detail"]
    assert uat["status"]["staging"] is True and uat["status"]["stage"] == wf.APPROVED_FOR_VALIDATION
    assert uat["status"]["model"] == reg.model and uat["status"]["version"] == reg.version
    assert checks["stop the staging sidecar"]["passed"] and all(c["passed"] for c in uat["checks"])
    assert uat["latency_ms"]["calls"] == 7 and 0 < uat["latency_ms"]["p50"] <= uat["latency_ms"]["max"]
    # The sample includes a row with a missing value (a cancelled flight): null in every format.
    from mlflow_governance.training.data import feature_frame

    features = feature_frame(pd.read_parquet(march_parquet))
    assert features.iloc[uat["row_positions"]].isna().any(axis=1).any()
    # The sidecar ran as the validator, with its own payload database, and was stopped cleanly.
    sidecar = uat["sidecar"]
    assert sidecar["origin"] == "started" and sidecar["identity"] == "victor"
    assert sidecar["exit_code"] == 0 and sidecar["stopped_cleanly"] is True
    assert f"--version {reg.version} --staging" in sidecar["command"] and "--payload-url sqlite:///" in sidecar["command"]
    port = sidecar["port"]
    assert not listening(port) and not alive(sidecar["pid"])
    assert processes_naming(f"127.0.0.1:{port}") == [] and processes_naming(f"--port {port} ") == []

    # The run: metrics, params, tag, the page's section and the sidecar's log.
    run = MlflowClient().get_run(run_id)
    assert run.data.metrics["smoke_test_passed"] == 1.0 and run.data.metrics["smoke_test_max_abs_diff"] <= 1e-9
    assert run.data.metrics["smoke_test_formats_matched"] == 4.0
    assert run.data.metrics["smoke_test_latency_p50_ms"] == uat["latency_ms"]["p50"]
    assert run.data.params["smoke_test_url"] == uat["url"] and run.data.params["smoke_test_sidecar"] == "started"
    assert run.data.tags["mlgov_smoke_test"] == "passed"
    html = download(f"runs:/{run_id}/validation/report.html", tmp_path).read_text()
    assert "UAT deployment: REST smoke test" in html and 'id="smoke-checks"' in html
    assert 'id="smoke-verdict" class="verdict pass"' in html and html.count("<tr><td>POST /invocations (") == 6
    log = download(f"runs:/{run_id}/validation/smoke_test_sidecar.log", tmp_path).read_text()
    assert f"serving models:/{reg.model}/{reg.version} (staging)" in log
    # The submission says so.
    submit = GovernanceClient().audit(reg.model)[-1]
    assert submit["action"] == "submit" and submit["actor"] == "victor"
    assert f"UAT smoke test passed on {uat['url']}" in submit["comment"]
    assert GovernanceClient().verify_audit()["ok"]


def test_a_failed_smoke_test_keeps_the_run_and_submits_nothing(for_validation, march_parquet, small_body_sidecar,
                                                               tmp_path):
    reg = for_validation
    from mlflow_governance.training.data import feature_frame

    features = feature_frame(pd.read_parquet(march_parquet))
    sample = features.iloc[smoke.sample_positions(features)]
    assert all(len(json.dumps(b)) > 1024 for b in smoke.request_bodies(sample).values())  # all four are refused
    audit_before = len(GovernanceClient().audit(reg.model))
    result = mlgov("validate", "--model", reg.model, "--version", str(reg.version), "--data", str(march_parquet),
                   "--config", str(write_config(tmp_path, LENIENT)), "--smoke-url", small_body_sidecar.url + "/")
    assert result.exit_code == 7, result.output
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and result.stderr.strip().splitlines()[-1] == lines[0], result.stderr
    assert lines[0].startswith(
        f"Error: UAT smoke test failed on {small_body_sidecar.url} (running staging sidecar): POST /invocations "
        "(dataframe_split, dataframe_records, instances, inputs): answered HTTP 413 BODY_TOO_LARGE: the body is larger "
        "than the limit of 1024 bytes; the report is runs:/"), lines[0]
    assert "nothing submitted" in lines[0]
    assert GovernanceClient().status(reg.model, reg.version)["version"]["stage"] == wf.APPROVED_FOR_VALIDATION
    rows = GovernanceClient().audit(reg.model)[audit_before:]
    assert [r["action"] for r in rows if r["outcome"] == "allowed"] == ["set_monitors"]  # as after a breach
    failed = [r for r in all_runs(reg) if r.data.tags.get("mlgov_smoke_test") == "failed"]
    assert len(failed) == 1 and failed[0].data.metrics["smoke_test_passed"] == 0.0
    run_id = failed[0].info.run_id
    assert f"runs:/{run_id}/validation/report.html" in lines[0]
    uat = json.loads(download(f"runs:/{run_id}/validation/report.json", tmp_path).read_text())["smoke_test"]
    assert uat["passed"] is False and uat["sidecar"]["origin"] == "given" and uat["formats_matched"] == 0
    assert len(uat["failures"]) == 4 and all("413" in f for f in uat["failures"])
    checks = {c["check"]: c for c in uat["checks"]}
    assert checks["GET /status"]["passed"] and checks["POST /invocations (malformed JSON)"]["passed"]
    html = download(f"runs:/{run_id}/validation/report.html", tmp_path).read_text()
    assert 'id="smoke-verdict" class="verdict breach"' in html and 'id="smoke-failures"' in html
    # The deployer's sidecar is theirs: the validator leaves it running.
    assert small_body_sidecar.proc.poll() is None and small_body_sidecar.get("/health").status_code == 200


def test_a_smoke_url_that_is_not_a_staging_sidecar_of_the_version_is_refused(for_validation, march_parquet,
                                                                              small_body_sidecar, tmp_path):
    """Before anything is written: nothing listening (through the MLproject entry point's script),
    another model or version, and both options at once."""
    reg = for_validation
    runs_before = {r.info.run_id for r in all_runs(reg)}
    audit_before = len(GovernanceClient().audit(reg.model))
    dead = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, str(REPO / "projects" / "validate.py"), "--model", reg.model, "--version", str(reg.version),
         "--data", str(march_parquet), "--config=", "--override-comment=", "--smoke-test=false",
         f"--smoke-url={dead}"], cwd=tmp_path, env=validator_env(reg), capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0] == (f"Error: the sidecar at {dead} does not answer (is `mlgov serve --model "
                                            f"{reg.model} --version {reg.version} --staging` running there?)")
    nothing_written(reg, runs_before, audit_before)

    with pytest.raises(Exception) as exc:
        smoke.check_running(small_body_sidecar.url, "another-model", reg.version)
    assert f"serves {reg.model!r} version {reg.version}, not 'another-model' version {reg.version}" in str(exc.value)
    with pytest.raises(Exception) as exc:
        smoke.check_running(small_body_sidecar.url, reg.model, reg.version + 1)
    assert f"not {reg.model!r} version {reg.version + 1}" in str(exc.value)
    assert smoke.check_running(small_body_sidecar.url + "/", reg.model, reg.version) == small_body_sidecar.url

    both = mlgov("validate", "--model", reg.model, "--version", str(reg.version), "--data", str(march_parquet),
                 "--smoke-test", "--smoke-url", small_body_sidecar.url)
    assert both.exit_code == 2 and "not both" in both.output
    bad = mlgov("validate", "--model", reg.model, "--version", str(reg.version), "--data", str(march_parquet),
                "--smoke-url", "127.0.0.1:5001")
    assert bad.exit_code == 2 and "http(s) URL" in bad.stderr
    nothing_written(reg, runs_before, audit_before)


def test_a_sidecar_that_does_not_start_fails_the_smoke_test(for_validation):
    """The validator's sidecar stops on its own (here: ``mlgov serve`` refuses an unknown model,
    exit 4): the smoke test fails naming its one-line error, and nothing is left behind."""
    reg = for_validation
    features = pd.DataFrame({"MONTH": [3]})
    with acting("victor"), smoke.StagingSidecar("no-such-model", reg.version, reg.registry_uri) as sidecar:
        result = smoke.smoke_test(sidecar, "no-such-model", reg.version, wf.APPROVED_FOR_VALIDATION, features,
                                  [0], [0.1], identity="victor")
    result = smoke.after_stop(result, sidecar)
    assert result["passed"] is False and result["sidecar"]["ready"] is False and result["sidecar"]["exit_code"] == 4
    assert len(result["failures"]) == 1
    assert result["failures"][0].startswith("the staging sidecar did not start: mlgov serve exited with code 4: "
                                            "Error: ") and "no-such-model" in result["failures"][0]
    assert [c["check"] for c in result["checks"]] == ["start the staging sidecar"]
    assert "Error: " in sidecar.log_text and not alive(result["sidecar"]["pid"])


def test_a_stopped_validation_stops_its_sidecar(for_validation, march_parquet, tmp_path):
    """SIGTERM to ``mlgov validate`` while its staging sidecar runs: the sidecar is stopped too, and
    nothing is submitted."""
    import signal
    import time

    reg = for_validation
    proc = subprocess.Popen(
        [MLGOV, "validate", "--model", reg.model, "--version", str(reg.version), "--data", str(march_parquet),
         "--config", str(write_config(tmp_path, LENIENT)), "--smoke-test"],
        cwd=tmp_path, env=validator_env(reg), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        serving = []
        while not serving and time.monotonic() < deadline and proc.poll() is None:
            serving = [c for c in processes_naming(f"serve --model {reg.model} --version {reg.version} --staging")
                       if "--port" in c]
            time.sleep(0.2)
        assert serving, "the validation started no staging sidecar"
        port = int(serving[0].split("--port ")[1].split()[0])
        deadline = time.monotonic() + 120
        while not listening(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert listening(port)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert not listening(port) and processes_naming(f"--port {port} ") == []
    assert processes_naming(f"127.0.0.1:{port}") == []
    assert GovernanceClient().status(reg.model, reg.version)["version"]["stage"] == wf.APPROVED_FOR_VALIDATION
