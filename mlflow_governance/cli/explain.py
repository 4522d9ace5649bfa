"""``mlgov explain REQUEST_ID``: why the sidecar scored a row as it did.

Reads the scored row (features as scored, model, version, staging, prediction, probability) from
the sidecar's payload table by the request id ``/invocations`` returned, loads that version through
the registry with the project's skops allowlist (`model_files.load_mlflow_sklearn`, as the sidecar
does), and explains it as ``POST /explain`` does (`mlflow_governance.scoring.explanations`): contributions
per raw feature, largest first, with the base value and the output they sum to, and the
counterfactual. It explains a stored decision whatever its version's state is now (a rejected or
decommissioned version too: the decision was made and may be asked about); the sidecar's
``/explain`` is gated like scoring.

Exit codes: 0 explained; 2 a malformed request id or payload URL; 4 an unknown request id (or a
version the registry no longer has); 6 the payload database (named, without its password) or the
registry cannot be reached; 1 the version cannot be loaded or explained. One line on stderr each.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import click

from mlflow_governance.cli.common import EXIT_UNREACHABLE, echo_json, one_line

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
TRACE_EXIT_CODES = {"invalid": EXIT_BAD_INPUT, "refused": 3, "unknown": 4, "unavailable": EXIT_UNREACHABLE}


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def read_payload_row(url: str, request_id: str) -> dict[str, Any]:
    """The payload row of ``request_id`` (as `mlgov trace` reads it: the same messages and exit
    codes); exits 2/4/6 with one line when it cannot. A SQLite file that does not exist is
    reported as such (exit 6), not created."""
    from mlflow_governance.evidence.trace import TraceError, read_prediction

    try:
        return read_prediction(url, request_id)
    except TraceError as exc:
        _fail(exc.message, TRACE_EXIT_CODES[exc.kind])


def _version_fields(model: str, version: int) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    from mlflow_governance.client.governance import GovernanceClient

    try:
        status = GovernanceClient().status(model, version)
    except MlflowException as exc:
        message, code = one_line(exc)
        _fail(f"cannot read {model} version {version} in the registry: {message}", code)
    return (status.get("version") or {}).get("fields") or {}


def _features(row: dict[str, Any], document: dict[str, Any]):
    """The stored row typed as the sidecar scored it (the version's signature)."""
    import pandas as pd

    from mlflow_governance.sidecar import bodies

    values = json.loads(row["features"])
    columns = bodies.columns_from_mlmodel(document)
    typed = {c.name: bodies.check_values(c, [values.get(c.name)]) for c in columns}
    return pd.DataFrame(typed)


def explain_request(request_id: str, payload_url: str) -> dict[str, Any]:
    """The explanation of the scored row ``request_id`` as a JSON-ready document (exits on errors)."""
    from mlflow_governance.safe.model_files import load_mlflow_sklearn
    from mlflow_governance.scoring import explanations
    from mlflow_governance.sidecar.bodies import BodyError

    row = read_payload_row(payload_url, request_id)
    model, version = str(row["model"]), int(row["version"])
    fields = _version_fields(model, version)
    with tempfile.TemporaryDirectory(prefix="mlgov-explain-model-") as tmp:
        try:
            estimator, document = load_mlflow_sklearn(f"models:/{model}/{version}", Path(tmp) / "model")
        except ValueError as exc:
            _fail(f"{model} version {version} cannot be loaded: {str(exc).splitlines()[0]}", EXIT_FAILED)
    try:
        frame = _features(row, document)
    except (ValueError, BodyError) as exc:
        _fail(f"the stored row of {request_id} does not fit {model} version {version}'s signature: {exc}",
              EXIT_FAILED)
    try:
        explainer = explanations.for_version(model, version, estimator, list(frame.columns), fields)
        explanation = explainer.explain(frame)[0]
    except explanations.ExplanationUnavailable as exc:
        _fail(f"{model} version {version} cannot be explained: {exc}", EXIT_FAILED)
    except ValueError as exc:
        _fail(f"{model} version {version} cannot score the stored row of {request_id}: {str(exc)[:300]}",
              EXIT_FAILED)
    return {
        "request_id": request_id, "model": model, "version": version, "staging": bool(row["staging"]),
        "scored_at": datetime.fromtimestamp(int(row["ts"]) / 1000, tz=timezone.utc).isoformat(timespec="seconds"),
        "features": json.loads(row["features"]), "scored_prediction": int(row["prediction"]),
        "scored_probability": float(row["probability"]), "output_name": explanations.OUTPUT,
        "background_rows": len(explainer.background), "additivity_tolerance": explanations.ADDITIVITY_TOLERANCE,
        "actionable_features": list(explainer.actionable), **explanation.to_dict(),
    }


def _value(value: Any) -> str:
    return "missing" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


def _label(prediction: int) -> str:
    return "delayed" if prediction else "on time"


def render_text(doc: dict[str, Any]) -> str:
    where = "staging" if doc["staging"] else "production"
    lines = [
        f"request {doc['request_id']}: {doc['model']} version {doc['version']} ({where}), scored {doc['scored_at']}",
        f"prediction: {_label(doc['prediction'])}, P(DELAYED) = {doc['output']:.4f} "
        f"(as scored: {doc['scored_probability']:.4f})",
        f"base value: {doc['base_value']:.4f} (mean P(DELAYED) over {doc['background_rows']} reference rows)",
        f"contributions ({doc['method']} SHAP, {'exact' if doc['exact'] else 'sampled'}; base value + contributions = "
        f"{doc['base_value'] + sum(doc['contributions'].values()):.4f}, additivity error {doc['additivity_error']:.1e}):",
    ]
    ranked = sorted(doc["contributions"].items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    width = max(len(name) for name, _ in ranked)
    for name, value in ranked:
        lines.append(f"  {name:<{width}}  {_value(doc['features'].get(name)):>10}  {value:+.4f}")
    cf = doc.get("counterfactual")
    if cf:
        lines.append(f"counterfactual: {cf['feature']} {_value(cf['from'])} -> {_value(cf['to'])} gives "
                     f"P(DELAYED) = {cf['probability']:.4f} ({_label(cf['prediction'])})")
    else:
        lines.append(f"counterfactual: none: {doc.get('counterfactual_reason')}")
    return "\n".join(lines)


@click.command("explain")
@click.argument("request_id")
@click.option("--payload-url", default=None, metavar="URL",
              help="The sidecar's payload database (SQLAlchemy URL; default: sqlite:///./mlgov-payloads.db, as "
                   "mlgov serve).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def explain_command(request_id: str, payload_url: str | None, fmt: str) -> None:
    """Explain the prediction the sidecar made for REQUEST_ID: contributions per raw feature (SHAP),
    the base value and output they sum to, and the smallest actionable change that flips it."""
    import logging
    import os

    from mlflow_governance.evidence.trace import TraceError, normalise_request_id
    from mlflow_governance.sidecar import default_payload_url

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr: errors only
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        rid = normalise_request_id(request_id)
    except TraceError as exc:
        _fail(exc.message, TRACE_EXIT_CODES[exc.kind])
    doc = explain_request(rid, payload_url or default_payload_url())
    if abs(doc["output"] - doc["scored_probability"]) > 1e-9:
        click.echo(f"warning: {doc['model']} version {doc['version']} now scores this row {doc['output']:.6f}; the "
                   f"payload row says {doc['scored_probability']:.6f}", err=True)
    if fmt == "json":
        echo_json(doc)
    else:
        click.echo(render_text(doc))


def register(cli: click.Group) -> None:
    cli.add_command(explain_command)
