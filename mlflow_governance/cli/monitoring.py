"""``mlgov monitor``: the production monitor as a batch job over the payload table.

For deployments that schedule monitoring outside the sidecar (``mlflow run . -e monitor``). It
evaluates the latest window of the served version's scored rows exactly as the sidecar's monitor
does, logs the evaluation run, and turns usability to reject on a breach as the acting
ModelMonitor. Exit 0 when the window passes (or cannot be judged yet), 5 when it breached.
"""

from __future__ import annotations

import sys

import click

from mlflow_governance.cli.common import echo_json
from mlflow_governance.sidecar import DEFAULT_MONITOR_WINDOW_ROWS

EXIT_BREACHED = 5


@click.command("monitor")
@click.option("--model", required=True, help="The governed model.")
@click.option("--payload-url", required=True, metavar="URL", help="The sidecar's payload database (SQLAlchemy URL).")
@click.option("--version", type=int, default=None, help="The version (default: the production alias's).")
@click.option("--window-rows", type=click.IntRange(min=1), default=DEFAULT_MONITOR_WINDOW_ROWS, show_default=True,
              help="How many of the latest scored rows to evaluate.")
@click.option("--staging", is_flag=True, help="Evaluate a staging version's rows (never changes usability).")
@click.option("--json", "as_json", is_flag=True)
def monitor_command(model, payload_url, version, window_rows, staging, as_json):
    """Evaluate the latest scored rows with the version's monitors; reject usability on a breach."""
    from mlflow_governance.monitoring.base import BREACH
    from mlflow_governance.sidecar.watch import run_batch

    watcher, evaluation = run_batch(model, payload_url, version, window_rows, staging)
    if as_json:
        echo_json(watcher.last)
    else:
        click.echo(f"{model} version {watcher.last.get('version', '-')}: {watcher.last.get('verdict') or 'nothing to judge'}"
                   f" ({watcher.last.get('reason')})")
        if watcher.last.get("usability_action"):
            click.echo(f"usability turned to {watcher.last['usability_action']}: {watcher.last['comment']}")
        elif watcher.last.get("comment"):
            click.echo(watcher.last["comment"], err=True)
    if evaluation is not None and evaluation.verdict == BREACH:
        sys.exit(EXIT_BREACHED)


def register(cli: click.Group) -> None:
    cli.add_command(monitor_command)
