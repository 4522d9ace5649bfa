"""``mlgov events``: the governance events (list), what is left to deliver (status), and delivery
to MLflow's webhooks for a registry that no governance server delivers for (deliver)."""

from __future__ import annotations

import time

import click

from mlflow_governance.cli.common import echo_json
from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.client.rest import mlflow_error


@click.group("events")
def events_group() -> None:
    """Governance events: one per committed change, delivered to MLflow's webhooks."""


@events_group.command("list")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True, help="Only events after this id.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--model", default=None, help="Only this model's events.")
@click.option("--json", "as_json", is_flag=True, help="The governance events as JSON.")
def events_list(after: int, limit: int, model: str | None, as_json: bool) -> None:
    """The governance events, oldest first (each with its MLflow webhook event)."""
    found = GovernanceClient().events(after, limit, model)
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("(no events)")
    for e in found:
        where = f"{e['model']} v{e['version']}" if e.get("version") is not None else e["model"]
        click.echo(f"{e['id']:>6} {e['time'][:19]} {e['kind']:<22} {where}: {e.get('stage') or '-'}"
                   f" (waiting for {e.get('waiting_for') or 'nobody'}) by {e['actor']}"
                   f"  [{e.get('mlflow_event') or 'no MLflow event'}]")


def _print_status(status: dict) -> None:
    click.echo(f"events: {status['events']}, undelivered: {status['undelivered']} (and {status['undispatched']} "
               f"not dispatched to their receivers yet), delivered: {status['delivered']}, skipped: {status['skipped']}")
    if status.get("oldest_undelivered"):
        click.echo(f"oldest undelivered event: {status['oldest_undelivered']}")
    for t in status.get("targets", []):
        name = f"{t.get('name') or t['target']} ({t.get('url') or t['sink']})"
        click.echo(f"  {name}: {t['undelivered']} undelivered from event {t['oldest_event']}, {t['attempts']} "
                   f"attempt(s), next {t['next_attempt']}: {t.get('last_error') or 'not tried yet'}")
    if status.get("last_error"):
        click.echo(f"  {status['last_error']}")


@events_group.command("status")
@click.option("--json", "as_json", is_flag=True)
def events_status(as_json: bool) -> None:
    """How many events are not delivered to MLflow's webhooks yet, and why (webhooks: admin only on a server)."""
    status = GovernanceClient().events_status()
    if as_json:
        echo_json(status)
    else:
        _print_status(status)


MAX_PASSES = 1000  # a bound, not a limit one meets: each pass fans out up to 200 events


@events_group.command("deliver")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Configuration file (MLFLOW_WEBHOOK_* settings); default $MLGOV_CONFIG.")
@click.option("--watch", is_flag=True, help="Keep delivering every MLGOV_EVENTS_POLL_SECONDS until interrupted.")
def events_deliver(config_file: str | None, watch: bool) -> None:
    """Send the events that are due to MLflow's webhooks and to the people they concern (a local
    registry; a governance server delivers its own). Safe beside a server or another deliverer on the same database: each
    delivery is claimed by one of them. Exit 0; what is left is printed (and retried later)."""
    from mlflow_governance.core import environment_variables as ev
    from mlflow_governance.core import settings
    from mlflow_governance.notifications import people

    try:
        settings.load(config_file)
    except settings.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    client = GovernanceClient()
    if client.remote:
        raise mlflow_error(
            f"{client.registry_uri} is a governance server: it delivers its events itself (see mlgov events status)",
            "INVALID_PARAMETER_VALUE",
        )
    deliverer = people.deliverer(client.backend.store)
    while True:
        # One pass fans out at most a batch of events: go on while passes make progress, so a
        # backlog is delivered in one call (rows that failed wait for their retry time).
        fanned = delivered = failed = skipped = 0
        for _ in range(MAX_PASSES):
            result = deliverer.run_once()
            fanned, delivered = fanned + result.fanned_out, delivered + result.delivered
            failed, skipped = failed + result.failed, skipped + result.skipped
            for error in result.errors:
                click.echo(f"Error: {error}", err=True)
            if result.errors or not (result.fanned_out or result.delivered or result.skipped):
                break
        if fanned or delivered or failed or skipped:
            click.echo(f"delivered {delivered}, failed {failed}, skipped {skipped}")
        if not watch:
            break
        try:
            time.sleep(ev.MLGOV_EVENTS_POLL_SECONDS.get())
        except KeyboardInterrupt:
            break
    _print_status(people.delivery_status(client.backend.store))


def register(cli: click.Group) -> None:
    cli.add_command(events_group)
