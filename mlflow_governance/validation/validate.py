"""``mlgov validate`` / ``mlflow run . -e validate``: the validator's independent validation.

Order matters: everything that can refuse comes before anything is written. The governance
check (`GovernanceClient.require`: the ModelValidator's submit from Approved for Validation, not
by the version's developer), the configuration, the data and the version are all checked first;
a refusal leaves no run, no artifact and no configuration change. Then the configuration in force
is recorded on the version (audited, with its digest), the run is logged (report, figures as
metrics, the data as the run's input) and the version is submitted to Model Validation
Completed. A breach blocks the submission unless the validator overrides it with a comment; the
run is kept either way, as the evidence of what was found.

With ``smoke_test`` (``--smoke-test``) the validation also starts a staging sidecar of the version
(`smoke.StagingSidecar`, as the validator, booting while the validation scores) and, with
``smoke_url`` (``--smoke-url``), tests one already running (checked first: its ``/status`` must
name this model and version in staging mode, else a refusal before anything is written). The REST
smoke test's result is a section of the report (``smoke_test`` in the JSON), metrics
(``smoke_test_passed``...) and a sentence of the submission comment; a failed smoke test blocks the
submission like a breach, but no override comment lifts it (`smoke.SmokeTestFailed`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from mlflow_governance.core import workflow
from mlflow_governance.core.identity import current_user
from mlflow_governance.core.monitor_config import MonitorConfig, load_config
from mlflow_governance.core.monitor_config import config_in_force as monitor_config_in_force
from mlflow_governance.monitoring import suite
from mlflow_governance.monitoring.base import BREACH
from mlflow_governance.scoring.inputs import ValidationData, load_version, read_validation_data
from mlflow_governance.validation import smoke
from mlflow_governance.validation.report import report_html, report_json
from mlflow_governance.validation.smoke import SmokeTestFailed

__all__ = ["ValidationBreached", "SmokeTestFailed", "ValidationResult", "validate"]

REPORT_HTML = "validation/report.html"
REPORT_JSON = "validation/report.json"
EVIDENTLY_HTML = "validation/evidently_drift.html"
SMOKE_LOG = "validation/smoke_test_sidecar.log"


class ValidationBreached(MlflowException):
    """The monitors breached and the validator did not override: the run is logged, nothing submitted."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


@dataclass
class ValidationResult:
    model: str
    version: int
    run_id: str
    verdict: str
    submitted: bool
    digest: str
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    smoke_test: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        out = {
            "model": self.model, "version": self.version, "run_id": self.run_id, "verdict": self.verdict,
            "submitted": self.submitted, "config_digest": self.digest, "fields": self.fields,
            "figures": self.figures,
        }
        if self.smoke_test is not None:
            out["smoke_test"] = self.smoke_test
        return out


def config_in_force(status_version: dict[str, Any], path: str | None) -> tuple[MonitorConfig, bool]:
    """(configuration, whether it must be recorded): ``path`` if given, else the version's
    recorded one, else the defaults (recorded, so the figures can be traced to them)."""
    if path:
        return load_config(path), True
    config, recorded = monitor_config_in_force(status_version)
    return config, not recorded


def _breach_text(evaluation: suite.Evaluation) -> str:
    parts = []
    for f in evaluation.breaches():
        value = "undefined" if f.value is None else f"{f.value:.4f}"
        parts.append(f"{f.key}={value} (needs {f.comparison} {f.threshold})")
    return "; ".join(parts)


def _metrics(figures: dict[str, dict[str, Any]]) -> dict[str, float]:
    return {key: float(f["value"]) for key, f in figures.items() if f.get("value") is not None}


def _smoke_metrics(result: dict[str, Any]) -> dict[str, float]:
    latency = result.get("latency_ms") or {}
    values = {
        "smoke_test_passed": 1.0 if result.get("passed") else 0.0,
        "smoke_test_rows": result.get("rows"),
        "smoke_test_formats_matched": result.get("formats_matched"),
        "smoke_test_max_abs_diff": result.get("max_abs_diff"),
        "smoke_test_latency_p50_ms": latency.get("p50"),
        "smoke_test_latency_max_ms": latency.get("max"),
    }
    return {k: float(v) for k, v in values.items() if v is not None}


def validate(
    model: str,
    version: int,
    data: str,
    config: str | None = None,
    override_comment: str | None = None,
    experiment: str | None = None,
    client=None,
    smoke_test: bool = False,
    smoke_url: str | None = None,
) -> ValidationResult:
    """Validate ``models:/model/version`` on ``data`` as the acting ModelValidator; see the module."""
    import mlflow

    from mlflow_governance.client.governance import GovernanceClient
    from mlflow_governance.training.register import development_run

    client = client or GovernanceClient()
    version = int(version)
    override = (override_comment or "").strip() or None
    smoke_url = (smoke_url or "").strip() or None
    if smoke_test and smoke_url:
        raise ValueError("give --smoke-test (start a staging sidecar) or --smoke-url (test a running one), not both")
    # 1. Everything that can refuse, before anything is written.
    client.require(model, workflow.SUBMIT, version)
    status = client.status(model, version)["version"]
    target = smoke.check_running(smoke_url, model, version) if smoke_url else None
    monitor_config, record = config_in_force(status, config)
    dataset: ValidationData = read_validation_data(data)
    validator = current_user() or "(anonymous)"
    # The validator's own staging sidecar boots while the validation scores; it is stopped on
    # leaving the block, whatever happens inside.
    sidecar = smoke.StagingSidecar(model, version, client.registry_uri) if smoke_test else None
    with sidecar if sidecar is not None else contextlib.nullcontext():
        under_test = load_version(model, version, status.get("fields") or {})
        window = under_test.score(dataset)
        monitors = suite.build_monitors(monitor_config, under_test.reference)
        evaluation = suite.evaluate(monitors, window, monitor_config.digest())
        drift = next((m for m in monitors if getattr(m, "name", "") == "drift"), None)
        evidently = drift.evidently_html(window) if drift is not None and hasattr(drift, "evidently_html") else None
        uat = None
        if sidecar is not None or target is not None:
            uat = smoke.smoke_test(sidecar or target, model, version, status.get("stage"), dataset.features,
                                   window.prediction, window.probability, identity=validator)
    if sidecar is not None and uat is not None:
        uat = smoke.after_stop(uat, sidecar)

    # 2. The configuration in force, on the version (audited with its digest).
    if record:
        client.set_monitors(model, version, monitor_config.to_dict())

    # 3. The run: report, figures, the data as input (and the smoke test).
    context = {
        "model": model, "version": version, "model_uri": f"models:/{model}/{version}", "data": dataset.uri,
        "rows": len(dataset.frame), "labelled": int((~np.isnan(np.asarray(dataset.labels, dtype="float64"))).sum()), "validator": validator,
        "override_comment": override if evaluation.verdict == BREACH else None,
    }
    report = report_json(evaluation, context, smoke_test=uat)
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"{model}-validation"
    with development_run(model, name, run_name=f"validate {model} v{version}") as run:
        run_id = run.info.run_id
        mlflow.log_params({"governed_model": model, "governed_version": version, "validation_data": dataset.uri,
                           "monitor_config_digest": evaluation.digest, "validator": validator})
        mlflow.log_metrics(_metrics(report["figures"]))
        mlflow.set_tags({"governed_model": model, "governed_version": str(version),
                         "mlgov_validation_verdict": evaluation.verdict})
        if uat is not None:
            mlflow.log_params({"smoke_test_url": uat["url"], "smoke_test_sidecar": uat["sidecar"]["origin"]})
            mlflow.log_metrics(_smoke_metrics(uat))
            mlflow.set_tag("mlgov_smoke_test", "passed" if uat["passed"] else "failed")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "validation"
            folder.mkdir()
            (folder / Path(REPORT_JSON).name).write_text(json.dumps(report, indent=2, default=str))
            (folder / Path(REPORT_HTML).name).write_text(report_html(report, context, evidently))
            if evidently:
                (folder / Path(EVIDENTLY_HTML).name).write_text(evidently)
            (folder / "monitor_config.json").write_text(monitor_config.canonical_json())
            if sidecar is not None:
                (folder / Path(SMOKE_LOG).name).write_text(sidecar.log_text)
            mlflow.log_artifacts(str(folder), "validation")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]chema.*")
            warnings.filterwarnings("ignore", message="The specified dataset source")
            mlflow.log_input(mlflow.data.from_pandas(dataset.frame, source=dataset.uri, name="validation"),
                             context="validation")
    result = ValidationResult(model, version, run_id, evaluation.verdict, False, evaluation.digest,
                              report["figures"], smoke_test=uat)
    # 4. The submission, unless a failed smoke test or a breach stands.
    if uat is not None and not uat["passed"]:
        also = f"; the monitors breached too: {_breach_text(evaluation)}" if evaluation.verdict == BREACH else ""
        raise SmokeTestFailed(
            f"{smoke.summary(uat)}{also}; the report is runs:/{run_id}/{REPORT_HTML}; the version stays "
            f"{workflow.APPROVED_FOR_VALIDATION!r} (nothing submitted; no override applies: fix the deployment and "
            "validate again)"
        )
    if evaluation.verdict == BREACH and not override:
        raise ValidationBreached(
            f"validation of {model!r} version {version} breached: {_breach_text(evaluation)}; the report is "
            f"runs:/{run_id}/{REPORT_HTML}; the version stays {workflow.APPROVED_FOR_VALIDATION!r} (to submit "
            "anyway, pass --override-comment saying why)"
        )
    verdict_field = "override" if evaluation.verdict == BREACH else "pass"
    fields = {
        "validation_report": f"runs:/{run_id}/{REPORT_HTML}",
        "validation_dataset": dataset.uri,
        "validation_verdict": verdict_field,
    }
    if verdict_field == "override":
        comment = f"override: {override} (overridden: {_breach_text(evaluation)}; configuration {evaluation.digest})"
    else:
        comment = f"independent validation: {evaluation.verdict}; configuration {evaluation.digest}"
    if uat is not None:
        comment += f"; {smoke.summary(uat)} (runs:/{run_id}/{REPORT_JSON})"
    client.transition(model, workflow.SUBMIT, version, fields, comment=comment)
    result.submitted, result.fields = True, fields
    return result
