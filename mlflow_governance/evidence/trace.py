"""The evidence behind one served prediction: ``mlgov trace REQUEST_ID`` and ``GET .../trace``.

A prediction's request id leads, link by link, to everything that let the model answer:

1. the prediction (payload table: time, features, output, replica, version, staging);
2. the model version (registry URI, which version held the production alias at that moment);
3. every allowed step on its path to Ready to Use (audit trail: who, when, role, comment), and
   the trail's chain verdict;
4. the validation evidence (the version's validation fields, the validation run's figures, an
   override's comment);
5. the development run (the version's run: candidate, metric, code version, leaderboard);
6. the training dataset (the acquisition run behind ``training_data_asset``: digest, sources,
   tables, months, rows, quality verdict; and whether the development run's dataset has the same
   digest);
7. the monitor configuration in force at that moment and the evaluations just before and just
   after it, and the answer to "was the model healthy when it answered?".

Each link says where it was found; a link that cannot be followed is reported as missing with
the reason, never filled in. The registry, the trail and the runs are read through a `Sources`
object, so the same code runs in the CLI (through `GovernanceClient` and `MlflowClient`, local or
against a governance server) and inside the governance server (its own stores).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa

from mlflow_governance.core import workflow
from mlflow_governance.safe.urls import mask_url, scrub

REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


class TraceError(Exception):
    """A trace that cannot start; ``kind`` is ``invalid`` (exit 2, 400), ``refused`` (exit 3,
    403: the caller may not read the row's model), ``unknown`` (exit 4, 404) or ``unavailable``
    (exit 6, 503). The message names a database only masked (`mlflow_governance.safe.urls.mask_url`)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


class Sources(Protocol):
    """What a trace reads besides the payload table."""

    def status(self, model: str, version: int) -> dict[str, Any]: ...
    def audit(self, model: str) -> list[dict[str, Any]]: ...
    def verify(self) -> dict[str, Any]: ...
    def run(self, run_id: str) -> Any | None: ...
    def model_version(self, model: str, version: int) -> Any | None: ...


@dataclass
class Link:
    """One link of the chain: what was found, where, or why it is missing."""

    name: str
    found: bool
    where: str
    data: dict[str, Any] = field(default_factory=dict)
    missing: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "found": self.found, "where": self.where, "data": self.data,
                "missing": self.missing}


def normalise_request_id(text: str) -> str:
    """The request id as the sidecar writes it (32 lowercase hex digits; dashes allowed)."""
    value = (text or "").strip().lower().replace("-", "")
    if not REQUEST_ID.match(value):
        raise TraceError("invalid", f"{text!r} is not a request id (the sidecar's ids are 32 hexadecimal digits)")
    return value


def _when(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def display_url(url: str | sa.URL) -> str:
    """A payload URL as messages and the trace show it: password and secret query values masked."""
    try:
        return mask_url(url.render_as_string(hide_password=False) if isinstance(url, sa.URL) else str(url))
    except Exception:  # noqa: BLE001 - a display helper never fails
        return mask_url(None)


def open_payload_database(payload_url: str) -> sa.Engine:
    """An engine on an existing payload database, for reading: `TraceError` ``invalid`` for a URL
    that is not one, ``unavailable`` for a SQLite file that does not exist (never created here)."""
    from pathlib import Path

    try:
        parsed = sa.make_url(payload_url)
        backend = parsed.get_backend_name()
    except (sa.exc.ArgumentError, ValueError, TypeError):
        raise TraceError("invalid", f"the payload URL {display_url(str(payload_url)[:200])} is not a database URL "
                                    "(sqlite:///PATH, postgresql://...)") from None
    if backend == "sqlite" and (parsed.database in (None, "", ":memory:") or not Path(parsed.database).is_file()):
        raise TraceError("unavailable", f"the payload database {display_url(parsed)} does not exist (no such file): "
                                        "give the sidecar's --payload-url")
    connect_args = {"connect_timeout": 5} if backend in ("postgresql", "mysql", "mariadb") else {}
    try:
        return sa.create_engine(parsed, connect_args=connect_args)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError, TypeError):
        raise TraceError("invalid", f"{display_url(parsed)} is not a database URL this installation can open "
                                    "(sqlite:///PATH, postgresql://...)") from None


# What a driver says when the URL names something that is not a database at all (a text file,
# an image...): bad input, exit 2, not an outage.
_NOT_A_DATABASE = ("file is not a database", "not a database", "file is encrypted")


def _database_problem(exc: sa.exc.DBAPIError, where: str, url: str) -> TraceError:
    """The one-line `TraceError` of a database error while reading the payload table (never the
    driver's SQL text, its parameters or a traceback)."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = reason.lower()
    if "no such table" in lowered or "does not exist" in lowered and "relation" in lowered:
        return TraceError("unknown", f"{where} has no payload table")
    if any(mark in lowered for mark in _NOT_A_DATABASE):
        return TraceError("invalid", f"the payload URL names {where}, which is not a database "
                                     f"({scrub(reason, url)[:200]}): give the sidecar's --payload-url")
    if "no such column" in lowered or ("column" in lowered and "does not exist" in lowered):
        return TraceError("invalid", f"{where} is not a payload database this version reads "
                                     f"({scrub(reason, url)[:200]})")
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return TraceError("unavailable", f"the payload database {where} is not reachable")
    return TraceError("invalid", f"the payload database {where} cannot be read as a payload database "
                                 f"({type(getattr(exc, 'orig', None) or exc).__name__})")


def _payload_table(conn) -> sa.Table:
    """``mlgov_payload`` as this database has it: the sidecar's columns that exist there (an
    older database has no ``caller`` column; its rows are traced without it)."""
    from mlflow_governance.sidecar import schema

    present = {c["name"] for c in sa.inspect(conn).get_columns(schema.payload.name)}
    if not present:
        raise sa.exc.NoSuchTableError(schema.payload.name)
    return sa.Table(schema.payload.name, sa.MetaData(),
                    *(sa.Column(c.name, c.type) for c in schema.payload.columns if c.name in present))


def read_prediction(payload_url: str, request_id: str) -> dict[str, Any]:
    """The payload row of ``request_id`` (``caller`` None when not recorded or not a column of
    this database); `TraceError` when unknown, not a payload database or unreachable."""
    from mlflow_governance.sidecar import schema

    engine = open_payload_database(payload_url)
    where = display_url(payload_url)
    try:
        with engine.connect() as conn:
            payload = _payload_table(conn)
            row = conn.execute(sa.select(payload).where(payload.c.request_id == request_id)).first()
            if row is None:
                raise TraceError("unknown", f"no scored row with request id {request_id} in {where}")
            found = dict(row._mapping)
            found.setdefault("caller", None)
            feedback = conn.execute(
                sa.select(schema.feedback.c.label, schema.feedback.c.ts)
                .where(schema.feedback.c.request_id == request_id).order_by(schema.feedback.c.seq.desc())
            ).first()
            found["feedback"] = None if feedback is None else {"label": feedback.label, "time": _when(feedback.ts)}
            found["evaluations"] = _evaluations(conn, found)
    except sa.exc.NoSuchTableError:
        raise TraceError("unknown", f"{where} has no payload table") from None
    except sa.exc.DBAPIError as exc:
        raise _database_problem(exc, where, str(payload_url)) from None
    except sa.exc.SQLAlchemyError as exc:
        raise TraceError("invalid", f"the payload database {where} cannot be read ({type(exc).__name__})") from None
    finally:
        engine.dispose()
    return found


def _evaluations(conn, row: dict[str, Any]) -> dict[str, Any]:
    """The production monitor's evaluations of the row's version just before and just after it."""
    from mlflow_governance.sidecar import schema

    e = schema.evaluation
    base = sa.select(e).where(e.c.model == row["model"], e.c.version == row["version"])
    try:
        before = conn.execute(base.where(e.c.ts <= row["ts"]).order_by(e.c.ts.desc(), e.c.seq.desc())).first()
        after = conn.execute(base.where(e.c.ts > row["ts"]).order_by(e.c.ts, e.c.seq)).first()
    except sa.exc.DBAPIError:
        return {"before": None, "after": None, "problem": "no evaluation table in the payload database"}

    def shape(r):
        if r is None:
            return None
        return {"ts": r.ts, "time": _when(r.ts), "verdict": r.verdict, "reason": r.reason, "rows": r.rows, "run_id": r.run_id,
                "usability_action": r.usability_action, "config_digest": r.config_digest,
                "breaches": json.loads(r.breaches or "[]")}

    return {"before": shape(before), "after": shape(after)}


# --- the chain -----------------------------------------------------------------------------------


def _run_id_of(uri: str | None) -> str | None:
    match = re.match(r"^runs:/([0-9a-f]{32})(?:/|$)", (uri or "").strip())
    return match.group(1) if match else None


def _steps(rows: list[dict[str, Any]], version: int) -> list[dict[str, Any]]:
    """The allowed stage changes of the model and of ``version`` up to its first Ready to Use."""
    out = []
    for r in rows:
        if r.get("outcome") != "allowed" or r.get("version") not in (None, version):
            continue
        if r.get("from_stage") == r.get("to_stage") and r.get("action") != workflow.INITIATE:
            continue
        out.append({"seq": r["seq"], "time": _when(r["ts"]), "actor": r["actor"], "role": r.get("role"),
                    "action": r["action"], "from": r.get("from_stage"), "to": r.get("to_stage"),
                    "version": r.get("version"), "comment": r.get("comment")})
        if r.get("version") == version and r.get("to_stage") == workflow.READY_TO_USE:
            break
    return out


READY, DECOMMISSIONED_FROM_READY = "ready", "decommissioned"


def usability_events(rows: list[dict[str, Any]]):
    """(row, event) for each allowed audit row that changed a version's usability, in order:
    ``ready`` (it entered Ready to Use: accept, and the production alias is bound to it),
    ``reject`` / ``accept`` (the usability decisions), ``decommissioned`` (it left Ready to Use)."""
    for r in rows:
        if r.get("outcome") != "allowed" or r.get("version") is None:
            continue
        if r.get("to_stage") == workflow.READY_TO_USE and r.get("from_stage") != workflow.READY_TO_USE:
            yield r, READY
        elif r.get("to_stage") == workflow.READY_TO_USE and r["action"] in (workflow.REJECT, workflow.ACCEPT):
            yield r, r["action"]
        elif r.get("from_stage") == workflow.READY_TO_USE and r.get("to_stage") == workflow.DECOMMISSIONED:
            yield r, DECOMMISSIONED_FROM_READY


def _alias_at(rows: list[dict[str, Any]], ts: int) -> tuple[int | None, list[dict[str, Any]]]:
    """(the version the production alias named at ``ts``, the alias's history from the trail)."""
    history, holder = [], None
    for r, event in usability_events(rows):
        if event not in (READY, DECOMMISSIONED_FROM_READY):
            continue
        history.append({"time": _when(r["ts"]), "version": r["version"],
                        "event": "bound" if event == READY else "released", "by": r["actor"]})
        if r["ts"] <= ts:
            if event == READY:
                holder = r["version"]
            elif holder == r["version"]:
                holder = None
    return holder, history


def _usability_at(rows: list[dict[str, Any]], version: int, ts: int) -> tuple[str | None, dict[str, Any] | None]:
    """The version's usability at ``ts`` by the trail (accept from Ready to Use on), and the row
    that set it."""
    state, by = None, None
    for r, event in usability_events(rows):
        if r["ts"] > ts:
            break
        if r["version"] != version:
            continue
        state = None if event == DECOMMISSIONED_FROM_READY else \
            workflow.USABILITY_REJECT if event == workflow.REJECT else workflow.USABILITY_ACCEPT
        by = r
    shown = None if by is None else {"ts": by["ts"], "time": _when(by["ts"]), "actor": by["actor"],
                                      "action": by["action"], "comment": by.get("comment")}
    return state, shown


def _monitor_config_at(rows: list[dict[str, Any]], version: int, ts: int) -> dict[str, Any] | None:
    found = None
    for r in rows:
        if r["ts"] > ts:
            break
        if r.get("outcome") == "allowed" and r.get("version") == version and r.get("action") == workflow.SET_MONITORS:
            found = r
    if found is None:
        return None
    values = json.loads(found.get("fields") or "{}") if isinstance(found.get("fields"), str) else found.get("fields")
    return {"digest": (values or {}).get("monitor_config_digest"), "set_by": found["actor"], "role": found.get("role"),
            "time": _when(found["ts"]), "audit_seq": found["seq"]}


def _run_summary(run) -> dict[str, Any]:
    tags = dict(run.data.tags)
    inputs = []
    for d in getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []:
        inputs.append({"name": d.dataset.name, "digest": d.dataset.digest, "source_type": d.dataset.source_type,
                       "context": next((t.value for t in d.tags if t.key == "mlflow.data.context"), None)})
    return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "run_name": run.info.run_name,
            "start": _when(run.info.start_time), "user": run.info.user_id, "status": run.info.status,
            "params": dict(run.data.params), "metrics": dict(run.data.metrics),
            "code_version": tags.get("mlflow.source.git.commit"), "source": tags.get("mlflow.source.name"),
            "tags": {k: v for k, v in tags.items() if not k.startswith("mlflow.")}, "datasets": inputs}


def trace(request_id: str, payload_url: str, sources: Sources, authorize=None) -> dict[str, Any]:
    """The whole chain behind one prediction (see the module docstring); ``authorize(model)``, when
    given, is called before anything about the model is read (the server's READ permission)."""
    request_id = normalise_request_id(request_id)
    row = read_prediction(payload_url, request_id)
    model, version, ts = row["model"], int(row["version"]), int(row["ts"])
    if authorize is not None:
        authorize(model)
    links: list[Link] = []
    links.append(Link("prediction", True, f"payload table mlgov_payload in {display_url(payload_url)}", {
        "request_id": request_id, "time": _when(ts), "model": model, "version": version,
        "staging": bool(row["staging"]), "replica": row.get("replica"), "caller": row.get("caller"),
        "features": json.loads(row["features"]),
        "prediction": row["prediction"], "probability": row["probability"], "feedback": row["feedback"],
    }))

    try:
        status = sources.status(model, version)
    except Exception as exc:  # noqa: BLE001 - reported as a missing link
        status = None
        problem = getattr(exc, "message", None) or str(exc)
    rows = sources.audit(model) if status is not None else []
    entity = (status or {}).get("version") or {}
    holder, alias_history = _alias_at(rows, ts)
    mv = sources.model_version(model, version) if status is not None else None
    if status is None:
        links.append(Link("model version", False, "governance registry", missing=problem))
    else:
        links.append(Link("model version", True, "governance registry and audit trail", {
            "uri": f"models:/{model}/{version}", "stage_now": entity.get("stage"),
            "usability_now": entity.get("usability"), "developer": entity.get("developer"),
            "source": getattr(mv, "source", None), "run_id": getattr(mv, "run_id", None),
            "production_alias": status.get("production_alias"), "alias_at_prediction": holder,
            "served_the_alias": (not row["staging"]) and holder == version,
            "alias_history": alias_history,
        }))

    steps = _steps(rows, version)
    verdict = None
    try:
        verdict = sources.verify()
    except Exception as exc:  # noqa: BLE001 - the chain verdict is reported as unknown
        verdict = {"ok": None, "problem": getattr(exc, "message", None) or str(exc)}
    mine = [d for d in (verdict.get("discrepancies") or []) if d.get("model") == model]
    reached = any(s["version"] == version and s["to"] == workflow.READY_TO_USE for s in steps)
    links.append(Link(
        "approvals", bool(steps), f"audit trail of {model} (rows {steps[0]['seq']}-{steps[-1]['seq']})" if steps
        else f"audit trail of {model}",
        {"steps": steps, "reached_ready_to_use": reached,
         "chain": {"ok": verdict.get("ok"), "rows": verdict.get("rows"), "problem": verdict.get("problem"),
                   "discrepancies_for_model": mine}},
        None if steps else "no allowed step of this model is in the audit trail"))

    fields = entity.get("fields") or {}
    report = fields.get("validation_report")
    validation_run = _run_id_of(report)
    submit = next((s for s in steps if s["version"] == version and s["from"] == workflow.APPROVED_FOR_VALIDATION
                   and s["to"] == workflow.MODEL_VALIDATION_COMPLETED), None)
    data: dict[str, Any] = {"report": report, "dataset": fields.get("validation_dataset"),
                            "verdict": fields.get("validation_verdict"),
                            "submitted_by": submit and submit["actor"], "submitted": submit and submit["time"],
                            "comment": submit and submit["comment"]}
    run = sources.run(validation_run) if validation_run else None
    if run is not None:
        summary = _run_summary(run)
        data.update(run_id=validation_run, figures=summary["metrics"], run_tags=summary["tags"])
    missing = None
    if not report:
        missing = "the version has no validation_report field"
    elif run is None:
        missing = f"the validation run behind {report} cannot be read" if validation_run else None
    links.append(Link("validation", bool(report), f"version field validation_report ({report})" if report
                      else "version fields", data, missing))

    dev_run_id = getattr(mv, "run_id", None)
    dev = sources.run(dev_run_id) if dev_run_id else None
    if dev is None:
        links.append(Link("development run", False, "the model version's run", missing=(
            f"run {dev_run_id} cannot be read" if dev_run_id else "the model version names no run")))
        dev_summary = None
    else:
        dev_summary = _run_summary(dev)
        links.append(Link("development run", True, f"run {dev_run_id} (the model version's run)", {
            **{k: dev_summary[k] for k in ("run_id", "run_name", "start", "user", "code_version", "source")},
            "best_candidate": dev_summary["params"].get("best_candidate"),
            "family": dev_summary["params"].get("best_family"),
            "metrics": dev_summary["metrics"], "leaderboard": fields.get("experiment_file"),
            "model_quality": fields.get("model_quality"), "datasets": dev_summary["datasets"],
        }))

    model_fields = (status or {}).get("fields") or {}
    asset = model_fields.get("training_data_asset") or fields.get("training_data_asset")
    acquisition_id = _run_id_of(asset)
    acquisition = sources.run(acquisition_id) if acquisition_id else None
    if acquisition is None:
        why = ("the model has no training_data_asset field" if not asset else
               f"{asset} is not an acquisition run's artifact" if not acquisition_id else
               f"the acquisition run {acquisition_id} cannot be read")
        links.append(Link("training dataset", False, "model field training_data_asset", {"asset": asset}, why))
    else:
        acq = _run_summary(acquisition)
        digest = acq["tags"].get("dataset_digest")
        trained_on = [d["digest"] for d in (dev_summary or {}).get("datasets", []) if d.get("context") == "training"]
        links.append(Link("training dataset", True, f"acquisition run {acquisition_id} (model field "
                                                     f"training_data_asset)", {
            "asset": asset, "digest": digest, "quality_flag": acq["tags"].get("training_data_quality_flag")
            or model_fields.get("training_data_quality_flag"),
            "sources": {role: {"url": acq["params"].get(f"{role}_source"),
                               "tables": (acq["params"].get(f"{role}_tables") or "").split(",") or None,
                               "rows": acq["metrics"].get(f"{role[:-1]}_rows")}
                        for role in ("flights", "airports")},
            "months": acq["params"].get("join_months"), "joined_rows": acq["metrics"].get("joined_rows"),
            "development_run_digests": trained_on,
            "development_used_this_dataset": (digest in trained_on) if trained_on and digest else None,
        }))

    config = _monitor_config_at(rows, version, ts)
    usability, set_by = _usability_at(rows, version, ts)
    evaluations = row["evaluations"]
    before = evaluations.get("before")
    # Healthy: usable by the trail, and no breach evaluated since usability was last set.
    healthy = (not row["staging"]) and usability == workflow.USABILITY_ACCEPT and not (
        before is not None and before["verdict"] == "breach" and set_by is not None and before["ts"] > set_by["ts"])
    links.append(Link("monitoring", True, "audit trail (set_monitors, usability) and mlgov_monitor_evaluation", {
        "config_in_force": config, "usability_at_prediction": usability, "usability_set_by": set_by,
        "evaluation_before": before, "evaluation_after": evaluations.get("after"),
        "healthy_when_it_answered": healthy if not row["staging"] else None,
        "staging": bool(row["staging"]),
    }, None if config else "no monitor configuration was recorded before the prediction (the defaults applied)"))
    return {"request_id": request_id, "model": model, "version": version, "time": _when(ts),
            "healthy_when_it_answered": healthy if not row["staging"] else None,
            "links": [link.to_dict() for link in links]}


# --- sources -------------------------------------------------------------------------------------


class ClientSources:
    """`Sources` through the governance client and MLflow's client (local registry or server)."""

    def __init__(self, governance=None, mlflow_client=None):
        from mlflow import MlflowClient

        from mlflow_governance.client.governance import GovernanceClient

        self.governance = governance or GovernanceClient()
        self.mlflow = mlflow_client or MlflowClient()

    def status(self, model, version):
        return self.governance.status(model, version)

    def audit(self, model):
        return self.governance.audit(model)

    def verify(self):
        return self.governance.verify_audit()

    def run(self, run_id):
        try:
            return self.mlflow.get_run(run_id)
        except Exception:  # noqa: BLE001 - a run that cannot be read is a missing link
            return None

    def model_version(self, model, version):
        try:
            return self.mlflow.get_model_version(model, str(version))
        except Exception:  # noqa: BLE001 - reported as missing
            return None


# --- rendering -----------------------------------------------------------------------------------


NOT_RECORDED = "(not recorded)"


def _text_value(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, sort_keys=True)
    return "-" if value is None else str(value)


def render_text(result: dict[str, Any]) -> str:
    healthy = result["healthy_when_it_answered"]
    lines = [f"request {result['request_id']}: models:/{result['model']}/{result['version']} at {result['time']}",
             "healthy when it answered: " + ("n/a (staging)" if healthy is None else "yes" if healthy else "NO")]
    for link in result["links"]:
        mark = "found" if link["found"] else "MISSING"
        lines.append("")
        lines.append(f"== {link['name']} [{mark}] ({link['where']})")
        if link["missing"]:
            lines.append(f"   missing: {link['missing']}")
        for key, value in link["data"].items():
            if key == "steps":
                for s in value:
                    lines.append(f"   {s['time']}  {s['actor']} ({s['role'] or '-'}) {s['action']}: "
                                 f"{s['from'] or '-'} -> {s['to'] or '-'}" + (f"  \"{s['comment']}\"" if s["comment"]
                                                                              else ""))
                continue
            if key == "caller" and link["name"] == "prediction":
                lines.append(f"   caller: {value or NOT_RECORDED}")
                continue
            lines.append(f"   {key}: {_text_value(value)}")
    return "\n".join(lines) + "\n"


def render_html(result: dict[str, Any]) -> str:
    e = html.escape
    healthy = result["healthy_when_it_answered"]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Trace {e(result['request_id'])}"
             "</title><style>body{font-family:system-ui,sans-serif;margin:24px}table{border-collapse:collapse}"
             "td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}"
             ".missing{color:#a61b1b}</style></head><body>",
             f"<h1>Request {e(result['request_id'])}</h1><p>models:/{e(result['model'])}/{result['version']} at "
             f"{e(result['time'])}; healthy when it answered: <strong id='healthy'>"
             f"{'n/a (staging)' if healthy is None else 'yes' if healthy else 'no'}</strong></p>"]
    for link in result["links"]:
        cls = "" if link["found"] else " class='missing'"
        parts.append(f"<h2{cls}>{e(link['name'])} ({'found' if link['found'] else 'missing'})</h2>"
                     f"<p>where: {e(link['where'])}</p>")
        if link["missing"]:
            parts.append(f"<p class='missing'>missing: {e(link['missing'])}</p>")
        parts.append("<table>")
        for key, value in link["data"].items():
            shown = (value or NOT_RECORDED) if key == "caller" and link["name"] == "prediction" else _text_value(value)
            parts.append(f"<tr><th>{e(key)}</th><td>{e(shown)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)
