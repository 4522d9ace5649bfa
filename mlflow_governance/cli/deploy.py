"""``mlgov deploy``: record where a version really runs, read from its running sidecar.

See `mlflow_governance.orchestration.deployment`: the deployment fields (ModelDeployer) or the monitoring
wrapper's (ModelMonitor) come from the sidecar's ``/status``; refused (exit 3) when the sidecar does
not answer, or answers for another model or version.
"""

from __future__ import annotations

import click

from mlflow_governance.cli.common import echo_json
from mlflow_governance.orchestration.deployment import record_from_sidecar


@click.command("deploy")
@click.option("--model", required=True, help="The governed model.")
@click.option("--version", required=True, type=int, help="The version the sidecar serves.")
@click.option("--url", required=True, metavar="URL", help="Base URL of the running sidecar (mlgov serve).")
@click.option("--space", default=None, help="Deployment space or environment (default: the sidecar's URL and mode).")
@click.option("--json", "as_json", is_flag=True)
def deploy(model: str, version: int, url: str, space: str | None, as_json: bool) -> None:
    """Record the deployment (ModelDeployer) or the monitoring wrapper (ModelMonitor) from a running sidecar."""
    from mlflow_governance.client.governance import GovernanceClient

    fields, result = record_from_sidecar(GovernanceClient(), model, version, url, space)
    if as_json:
        echo_json({"fields": fields, "stage": result["version"]["stage"]})
        return
    for key, value in fields.items():
        click.echo(f"  {key}: {value}")
    click.echo(f"models:/{model}/{version} -> {result['version']['stage']!r}")


def register(cli: click.Group) -> None:
    cli.add_command(deploy)
