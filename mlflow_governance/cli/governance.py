"""Governance commands: roles, initiate, transition, field, status, tasks, audit, factsheet."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import click

from mlflow_governance.cli.common import echo_json, parse_assignments
from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow


def _client() -> GovernanceClient:
    return GovernanceClient()


@click.group("roles")
def roles_group() -> None:
    """Manage who holds which governance role (admin only for changes)."""


@roles_group.command("grant")
@click.argument("user")
@click.argument("roles", nargs=-1, required=True, type=click.Choice(workflow.ALL_ROLES))
def roles_grant(user: str, roles: tuple[str, ...]) -> None:
    """Give USER one or more ROLES."""
    client = _client()
    for role in roles:
        changed = client.grant(user, role)
        click.echo(f"{'granted' if changed else 'already held'}: {user} {role}")


@roles_group.command("revoke")
@click.argument("user")
@click.argument("role", type=click.Choice(workflow.ALL_ROLES))
def roles_revoke(user: str, role: str) -> None:
    """Take ROLE from USER."""
    changed = _client().revoke(user, role)
    click.echo(f"{'revoked' if changed else 'not held'}: {user} {role}")


@roles_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def roles_list(as_json: bool) -> None:
    """List the role table."""
    rows = _client().roles()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("(no roles granted)")
    for r in rows:
        click.echo(f"{r['username']:<20} {r['role']:<20} granted by {r['granted_by']}")


@click.command("initiate")
@click.argument("model")
@click.option("--use-case", required=True, help="What the model is for.")
@click.option("--risk-tier", type=click.Choice(workflow.RISK_TIERS), default="medium", show_default=True)
@click.option("--business-owner", default=None, help="Accountable business owner (default: you).")
def initiate(model: str, use_case: str, risk_tier: str, business_owner: str | None) -> None:
    """Put MODEL under governance (ModelOwner); prints its inventory id."""
    click.echo(_client().initiate(model, use_case, risk_tier, business_owner))


@click.command("transition")
@click.argument("model")
@click.argument("action", type=click.Choice(workflow.ACTIONS))
@click.option("--version", type=int, default=None, help="The model version (development onwards).")
@click.option("--set", "assignments", multiple=True, metavar="FIELD=VALUE", help="Fill a field (repeatable).")
@click.option("--comment", default=None, help="Why (required for reject, accept, decommission).")
@click.option("--json", "as_json", is_flag=True, help="Print the new status as JSON.")
def transition(model: str, action: str, version: int | None, assignments: tuple[str, ...], comment, as_json) -> None:
    """Perform ACTION on MODEL (the workflow table decides which actions are valid where)."""
    status = _client().transition(model, action, version, parse_assignments(assignments), comment)
    if as_json:
        echo_json(status)
        return
    target = status.get("version") or status
    where = f"{model} v{version}" if version is not None else model
    click.echo(f"{where}: {target['stage']} (waiting for {target.get('assignee_role') or 'nobody'})")


@click.command("field")
@click.argument("model")
@click.argument("assignment", metavar="FIELD=VALUE")
@click.option("--version", type=int, default=None)
def field(model: str, assignment: str, version: int | None) -> None:
    """Fill one field of the current stage without moving the model."""
    (name, value), = parse_assignments((assignment,)).items()
    _client().set_field(model, name, value, version)
    click.echo(f"{model}{f' v{version}' if version else ''}: {name} = {value}")


@click.command("status")
@click.argument("model")
@click.option("--version", type=int, default=None)
@click.option("--json", "as_json", is_flag=True)
def status(model: str, version: int | None, as_json: bool) -> None:
    """Stage, assignee role, fields and usability of MODEL (or one version)."""
    s = _client().status(model, version)
    if as_json:
        echo_json(s)
        return
    click.echo(f"{s['model']} ({s.get('inventory_id') or 'not governed'}): {s.get('stage')}"
               f" - waiting for {s.get('assignee_role') or 'nobody'}")
    click.echo(f"  production: {s.get('production') or 'none'}")
    if s.get("in_flight"):
        click.echo(f"  in flight: {s['in_flight']}")
    for k, v in sorted(s.get("fields", {}).items()):
        click.echo(f"  {k}: {v}")
    for v in s.get("versions", []):
        mark = ""
        if v["version"] == s.get("production_version"):
            mark = " *production, REFUSED*" if v.get("usability") == "reject" else " *production*"
        click.echo(f"  version {v['version']}: {v['stage']} (waiting for {v.get('assignee_role') or 'nobody'})"
                   f"{', usability ' + v['usability'] if v.get('usability') else ''}{mark}")
    if version is not None:
        for k, v in sorted(s["version"]["fields"].items()):
            click.echo(f"    {k}: {v}")


@click.command("tasks")
@click.option("--role", type=click.Choice(workflow.GOVERNANCE_ROLES), default=None,
              help="Role whose inbox to show (default: every role you hold).")
@click.option("--json", "as_json", is_flag=True)
def tasks(role: str | None, as_json: bool) -> None:
    """The approvals inbox: what you may do next (or, with --role, what waits for that role)."""
    items = _client().tasks(role)
    if as_json:
        echo_json(items)
        return
    if not items:
        click.echo("(nothing waiting)")
    for i in items:
        where = f"{i['model']} v{i['version']}" if i["version"] else i["model"]
        refused = " REFUSED (usability reject): review" if i.get("usability") == "reject" else ""
        click.echo(f"{i['inventory_id'] or '-':<11} {where:<30} {i['stage']:<32} {i['assignee_role']:<18} "
                   f"{'/'.join(i.get('actions') or [])}{refused}")


@click.group("audit")
def audit_group() -> None:
    """Show and verify the tamper-evident audit trail."""


@audit_group.command("show")
@click.option("--model", default=None)
@click.option("--limit", type=int, default=None, help="Only the newest N rows.")
@click.option("--json", "as_json", is_flag=True)
def audit_show(model: str | None, limit: int | None, as_json: bool) -> None:
    """Print audit rows, oldest first."""
    rows = _client().audit(model, limit)
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        when = datetime.fromtimestamp(r["ts"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        target = f"{r['model'] or ''}{' v' + str(r['version']) if r['version'] else ''}"
        move = f"{r['from_stage'] or '-'} -> {r['to_stage'] or '-'}" if r["to_stage"] else (r["from_stage"] or "")
        extra = f" [{r['reason']}]" if r["reason"] else (f" ({r['comment']})" if r["comment"] else "")
        click.echo(f"#{r['seq']:<5} {when} {r['outcome']:<9} {r['actor']:<12} {r['action']:<13} {target:<24} {move}{extra}")


def _anchor(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise click.BadParameter("expected SEQ:HASH as printed by `mlgov audit head`", param_hint="--expect-head")
    return int(seq), digest


@audit_group.command("head")
def audit_head() -> None:
    """Print SEQ:HASH of the newest row; keep it outside the database to anchor the trail."""
    seq, digest = _client().audit_head()
    click.echo(f"{seq}:{digest}")


@audit_group.command("verify")
@click.option("--expect-head", default=None, metavar="SEQ:HASH",
              help="A head printed earlier by `mlgov audit head`: that row must be unchanged.")
def audit_verify(expect_head: str | None) -> None:
    """Check the hash chain and that the registry holds what the trail implies.

    Exit 1 naming the first bad row when the chain does not hold, and every model or version
    whose governance tags or production alias the trail does not explain.
    """
    v = _client().verify_audit(_anchor(expect_head))
    if v["ok"]:
        click.echo(f"audit trail intact: {v['rows']} rows; the registry matches the trail")
        return
    if v["problem"]:
        click.echo(f"AUDIT TRAIL BROKEN at row {v['bad_seq']}: {v['problem']}", err=True)
    else:
        click.echo(f"audit trail intact: {v['rows']} rows", err=True)
    found = v.get("discrepancies") or []
    hidden = v.get("hidden_discrepancies") or 0
    if found or hidden:
        click.echo(f"REGISTRY DISAGREES WITH THE AUDIT TRAIL ({len(found) + hidden} finding(s)):", err=True)
        for d in found:
            click.echo(f"  {d['text']}", err=True)
        if hidden:
            click.echo(f"  ... and {hidden} in models you may not read", err=True)
    sys.exit(1)


@click.command("factsheet")
@click.argument("model")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True)
@click.option("--output", default=None,
              help="Write to this file instead of standard output (an existing file only with --force).")
@click.option("--force", is_flag=True, help="Replace an existing --output file (never a directory or a special file).")
@click.option("--payload-url", default=None, metavar="URL",
              help="The sidecars' payload database: adds the live monitor evaluations and a trace per version.")
def factsheet(model: str, fmt: str, output: str | None, force: bool, payload_url: str | None) -> None:
    """The fact sheet of MODEL: inventory data, stage history, fields, approvals.

    --output FILE is checked before the registry is read: an existing file is replaced only
    with --force, a directory or a special file never, and the directory must exist and be
    writable (else exit 2, one line). The file is written to a temporary file and renamed.
    """
    from mlflow_governance.evidence.factsheet import live_evidence, render_html, render_markdown
    from mlflow_governance.safe import outputs

    if output is not None:
        outputs.check_output_path(output, force)
    client = _client()
    status_ = client.status(model)
    live = live_evidence(payload_url, model) if payload_url else None
    text = (render_html if fmt == "html" else render_markdown)(status_, client.audit(model), live)
    if output is None:
        click.echo(text)
    else:
        written = outputs.write_text(output, text, force)
        click.echo(f"fact sheet written to {written}")


def register(cli: click.Group) -> None:
    """Add the governance commands to ``cli``."""
    for command in (roles_group, initiate, transition, field, status, tasks, audit_group, factsheet):
        cli.add_command(command)
