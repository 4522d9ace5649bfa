"""The model fact sheet: inventory data, stage history, fields and approvals, as Markdown or HTML.

With the sidecars' payload database (`live_evidence`), it also carries the model's live
evidence: the latest production monitor evaluations of each version, and per version that served
the latest request it answered, as the `mlgov trace` command (or the server's trace URL) that
follows it back. The usability history comes from the audit trail either way.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any

from mlflow_governance.core import workflow

EVALUATIONS_PER_VERSION = 10


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def live_evidence(payload_url: str, model: str, trace_url: str | None = None) -> dict[str, Any]:
    """The latest monitor evaluations and the latest served request of each version of ``model``
    from a payload database; ``{"problem": ...}`` when it cannot be read (the sheet says so).
    ``trace_url``: the server's trace route, to link requests to (else the `mlgov trace` command)."""
    import sqlalchemy as sa

    from mlflow_governance.evidence.trace import TraceError, open_payload_database
    from mlflow_governance.sidecar import schema

    try:
        engine = open_payload_database(payload_url)
    except TraceError as exc:
        return {"problem": exc.message}
    e, p = schema.evaluation, schema.payload
    try:
        with engine.connect() as conn:
            evaluations = [dict(r._mapping) for r in conn.execute(
                sa.select(e).where(e.c.model == model).order_by(e.c.seq.desc()).limit(EVALUATIONS_PER_VERSION * 20))]
            latest = sa.select(p.c.version, sa.func.max(p.c.seq).label("seq")).where(
                p.c.model == model, p.c.staging.is_(False)).group_by(p.c.version).subquery()
            requests = conn.execute(sa.select(p.c.version, p.c.request_id, p.c.ts).join(
                latest, p.c.seq == latest.c.seq)).all()
    except sa.exc.DBAPIError:
        return {"problem": "the payload database could not be read"}
    finally:
        engine.dispose()
    per_version: dict[int, list[dict[str, Any]]] = {}
    for row in evaluations:
        per_version.setdefault(int(row["version"]), [])
        if len(per_version[int(row["version"])]) < EVALUATIONS_PER_VERSION:
            per_version[int(row["version"])].append(row)
    return {"evaluations": per_version, "trace_url": trace_url,
            "requests": {int(v): {"request_id": rid, "ts": ts} for v, rid, ts in requests}}


def _usability_history(history: list[dict[str, Any]]) -> list[list[str]]:
    from mlflow_governance.evidence.trace import DECOMMISSIONED_FROM_READY, READY, usability_events

    labels = {READY: "accept (Ready to Use)", DECOMMISSIONED_FROM_READY: "decommissioned"}
    return [[_when(r["ts"]), str(r["version"]), labels.get(event, event), r["actor"], r.get("role") or "-",
             r.get("comment") or ""] for r, event in usability_events(history)]


def _live_sections(live: dict[str, Any] | None) -> list[tuple[str, list[str], list[list[str]]]]:
    if live is None:
        note = [["(no payload database given: mlgov factsheet --payload-url URL, or MLGOV_PAYLOAD_URL on a server)"]]
        return [("Live monitor evaluations", ["Note"], note)]
    if live.get("problem"):
        return [("Live monitor evaluations", ["Note"], [[live["problem"]]])]
    evaluations = [
        [_when(r["ts"]), str(r["version"]), r["verdict"].upper(), str(r["rows"]),
         "; ".join(f"{b['key']}={b['value']}" for b in _json_list(r.get("breaches"))) or "-",
         r.get("usability_action") or "-", r.get("run_id") or "-"]
        for version in sorted(live["evaluations"], reverse=True) for r in live["evaluations"][version]
    ]
    traces = []
    for version, req in sorted(live["requests"].items(), reverse=True):
        link = (f"{live['trace_url']}?request_id={req['request_id']}" if live.get("trace_url")
                else f"mlgov trace {req['request_id']}")
        traces.append([str(version), _when(req["ts"]), req["request_id"], link])
    return [
        ("Live monitor evaluations (latest first)", ["When", "Version", "Verdict", "Rows", "Breaches", "Usability set",
                                                     "Run"], evaluations),
        ("Traces (the latest request each version answered)", ["Version", "When", "Request id", "Trace"], traces),
    ]


def _json_list(text: Any) -> list[dict[str, Any]]:
    import json

    try:
        value = json.loads(text) if isinstance(text, str) else (text or [])
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _sections(status: dict[str, Any], history: list[dict[str, Any]],
              live: dict[str, Any] | None = None) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) tables shared by both renderings."""
    inventory = [
        ["Model", status["model"]],
        ["Inventory id", status.get("inventory_id") or "-"],
        ["Model stage", status.get("stage") or "-"],
        ["Waiting for", status.get("assignee_role") or "-"],
        ["Production alias", f"{status['production_alias']} -> version {status['production_version']}"
         if status.get("production_version") else f"{status['production_alias']} (unbound)"],
        ["Production", status.get("production") or "none"],
        ["In flight", status.get("in_flight") or "none"],
    ]
    inventory += [[f"Field: {k}", v] for k, v in sorted(status.get("fields", {}).items())]
    versions = [
        [str(v["version"]), v.get("stage") or "-",
         (v.get("usability") or "-") + (" (REFUSED)" if v.get("usability") == "reject"
                                        and v["version"] == status.get("production_version") else ""),
         v.get("developer") or "-",
         v.get("assignee_role") or "-"]
        for v in status.get("versions", [])
    ]
    fields = [
        [str(v["version"]), k, val]
        for v in status.get("versions", [])
        for k, val in sorted(v.get("fields", {}).items())
    ]
    allowed = [r for r in history if r["outcome"] == "allowed" and r["action"] != "set_field"]
    approvals = [
        [_when(r["ts"]), r["actor"], r.get("role") or "-", str(r["version"] or "-"), r["action"],
         f"{r.get('from_stage') or '-'} -> {r.get('to_stage') or '-'}", r.get("comment") or ""]
        for r in allowed
    ]
    validations = [
        [str(r["version"]), r["actor"], (r.get("fields") or {}).get("validation_verdict", "-").upper(),
         (r.get("fields") or {}).get("validation_report", "-"), r.get("comment") or ""]
        for r in allowed
        if r["action"] == workflow.SUBMIT and r.get("from_stage") == workflow.APPROVED_FOR_VALIDATION
    ]
    monitors = [
        [_when(r["ts"]), str(r["version"]), r["actor"], r.get("role") or "-",
         (r.get("fields") or {}).get("monitor_config_digest", "-")]
        for r in allowed
        if r["action"] == workflow.SET_MONITORS
    ]
    refused = [
        [_when(r["ts"]), r["actor"], str(r["version"] or "-"), r["action"], r.get("reason") or ""]
        for r in history
        if r["outcome"] == "refused"
    ]
    return [
        ("Inventory", ["Item", "Value"], inventory),
        ("Versions", ["Version", "Stage", "Usability", "Developer", "Waiting for"], versions),
        ("Version fields", ["Version", "Field", "Value"], fields),
        ("Stage history and approvals", ["When", "Who", "Role", "Version", "Action", "Move", "Comment"], approvals),
        ("Validations (an OVERRIDE submitted a breach; its comment names the overridden figures)",
         ["Version", "Validator", "Verdict", "Report", "Comment"], validations),
        ("Monitor configurations", ["When", "Version", "Who", "Role", "Digest"], monitors),
        ("Usability history", ["When", "Version", "Usability", "Who", "Role", "Comment"], _usability_history(history)),
        *_live_sections(live),
        ("Refused attempts", ["When", "Who", "Version", "Action", "Reason"], refused),
    ]


def render_markdown(status: dict[str, Any], history: list[dict[str, Any]], live: dict[str, Any] | None = None) -> str:
    """The fact sheet as Markdown."""

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = [f"# Fact sheet: {status['model']} ({status.get('inventory_id') or 'not governed'})", ""]
    for title, header, rows in _sections(status, history, live):
        out += [f"## {title}", ""]
        if not rows:
            out += ["(none)", ""]
            continue
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
        out.append("")
    out.append(f"Lifecycle: {' -> '.join(s for s in workflow.STAGES if s not in workflow.TERMINAL_STAGES)}")
    return "\n".join(out) + "\n"


def render_html(status: dict[str, Any], history: list[dict[str, Any]], live: dict[str, Any] | None = None) -> str:
    """The fact sheet as a standalone HTML page."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Fact sheet: {e(status['model'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#eef}</style></head><body>",
        f"<h1>Fact sheet: {e(status['model'])} ({e(status.get('inventory_id') or 'not governed')})</h1>",
    ]
    for title, header, rows in _sections(status, history, live):
        parts.append(f"<h2>{e(title)}</h2>")
        if not rows:
            parts.append("<p>(none)</p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
