"""``mlgov users set-contact`` and ``mlgov notifications list/test``: who is told of governance
events, and how (the admin's, on a local registry and on a governance server alike)."""

from __future__ import annotations

import sys

import click

from mlflow_governance.cli.common import echo_json
from mlflow_governance.client.governance import GovernanceClient


@click.command("set-contact")
@click.argument("username")
@click.option("--email", default=None, metavar="ADDRESS", help="Mail address (sent through MLGOV_SMTP_URL).")
@click.option("--url", default=None, metavar="APPRISE_URL",
              help="The user's own notification URL instead of mail: slack://..., workflows://... (Teams), "
                   "jsons://host/path (a JSON webhook).")
@click.option("--clear", is_flag=True, help="Remove the contact: the user is not notified any more.")
def set_contact(username: str, email: str | None, url: str | None, clear: bool) -> None:
    """Give USERNAME a notification contact (admin only, audited): a mail address or an Apprise URL.

    The user is then told of the governance events that concern their roles (a task waiting for a
    role they hold; a usability reject, for ModelOwner and ModelMonitor holders). A malformed
    address or a URL Apprise cannot use is refused (exit 2); a URL is shown masked.
    """
    result = GovernanceClient().set_contact(username, email, url, clear)
    if result["outcome"] == "cleared":
        click.echo(f"{username}: contact removed (not notified)")
    elif result["outcome"] == "unchanged" and clear:
        click.echo(f"{username}: had no contact")
    else:
        click.echo(f"{username}: {result['channel']} {result['contact']}"
                   f"{' (unchanged)' if result['outcome'] == 'unchanged' else ''}")


@click.group("notifications")
def notifications_group() -> None:
    """Notifications to people (admin only): contacts, what is pending, a test message."""


@notifications_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def notifications_list(as_json: bool) -> None:
    """Each user: contact (a URL masked), roles, notifications pending / failing / delivered."""
    rows = GovernanceClient().notifications()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("(no users)")
    for r in rows:
        contact = f"{r['channel']} {r['contact']}" if r["contact"] else "-"
        click.echo(f"{r['user']:<16} {contact:<40} roles: {', '.join(r['roles']) or '-'}; pending {r['pending']}, "
                   f"failing {r['failed']}, delivered {r['delivered']}"
                   + (f"; {r['note']}" if r.get("note") else "")
                   + (f"; last error: {r['last_error']}" if r.get("last_error") else ""))


@notifications_group.command("test")
@click.argument("username")
def notifications_test(username: str) -> None:
    """Send USERNAME a test message now through their contact: exit 0 when the mail server or
    service took it, else exit 1 with its one-line reason (exit 4: the user has no contact)."""
    result = GovernanceClient().test_notification(username)
    if result["ok"]:
        click.echo(f"test notification sent to {username} ({result['contact']})")
        return
    click.echo(f"Error: the test notification to {username} ({result['contact']}) failed: {result['error']}", err=True)
    sys.exit(1)


def register(cli: click.Group) -> None:
    from mlflow_governance.cli.server import users

    users.add_command(set_contact)
    cli.add_command(notifications_group)
