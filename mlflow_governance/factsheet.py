"""The model fact sheet: inventory data, stage history, fields and approvals, as Markdown or HTML."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any

from mlflow_governance import workflow


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _sections(status: dict[str, Any], history: list[dict[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
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
        ("Refused attempts", ["When", "Who", "Version", "Action", "Reason"], refused),
    ]


def render_markdown(status: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """The fact sheet as Markdown."""

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = [f"# Fact sheet: {status['model']} ({status.get('inventory_id') or 'not governed'})", ""]
    for title, header, rows in _sections(status, history):
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


def render_html(status: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """The fact sheet as a standalone HTML page."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Fact sheet: {e(status['model'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#eef}</style></head><body>",
        f"<h1>Fact sheet: {e(status['model'])} ({e(status.get('inventory_id') or 'not governed')})</h1>",
    ]
    for title, header, rows in _sections(status, history):
        parts.append(f"<h2>{e(title)}</h2>")
        if not rows:
            parts.append("<p>(none)</p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
