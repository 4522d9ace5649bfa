"""``mlgov server`` (start the governance server) and ``mlgov users add`` (admin, remote)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import click
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from mlflow_governance import settings
from mlflow_governance.client import GovernanceClient


@click.command("server")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Configuration file (see governance.env.example); default $MLGOV_CONFIG.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option("--dry-run", is_flag=True, help="Print the mlflow server command instead of running it.")
def server(config_file: Path | None, host: str, port: int, workers: int, dry_run: bool) -> None:
    """Start `mlflow server --app-name governance` from the configuration file."""
    try:
        settings.load(config_file)
    except settings.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    registry = os.environ.get("MLFLOW_REGISTRY_STORE_URI", "")
    backend = os.environ.get("MLFLOW_BACKEND_STORE_URI") or registry.removeprefix("governed-")
    if not registry.startswith("governed-"):
        raise MlflowException(
            "MLFLOW_REGISTRY_STORE_URI must be governed-sqlite:///... or governed-postgresql://...",
            error_code=INVALID_PARAMETER_VALUE,
        )
    os.environ.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
    from mlflow_governance.server.app import check_settings

    check_settings()
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--app-name", "governance",
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--backend-store-uri", backend, "--registry-store-uri", registry,
    ]
    if os.environ.get("MLFLOW_ARTIFACTS_DESTINATION"):
        cmd += ["--artifacts-destination", os.environ["MLFLOW_ARTIFACTS_DESTINATION"]]
    if dry_run:
        click.echo(" ".join(cmd))
        return
    os.execv(sys.executable, cmd)


@click.group("users")
def users() -> None:
    """Manage the server's users (admin; needs MLFLOW_TRACKING_URI=http(s)://...)."""


@users.command("add")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="The new user's password.")
@click.option("--role", "roles", multiple=True, help="Governance role(s) to grant right away.")
def users_add(username: str, password: str, roles: tuple[str, ...]) -> None:
    """Create USERNAME on the governance server (MLflow basic-auth), optionally with roles."""
    client = GovernanceClient()
    if not client.remote:
        raise MlflowException(
            "users live on the governance server: set MLFLOW_TRACKING_URI to its http(s):// URL",
            error_code=INVALID_PARAMETER_VALUE,
        )
    client.backend.add_user(username, password)
    click.echo(f"user {username} created")
    for role in roles:
        client.grant(username, role)
        click.echo(f"granted: {username} {role}")


def register(cli: click.Group) -> None:
    cli.add_command(server)
    cli.add_command(users)
