"""``mlgov server`` (start the governance server) and ``mlgov users add`` (admin, remote)."""

from __future__ import annotations

import difflib
import os
import secrets
import sys
from pathlib import Path

import click

from mlflow_governance.cli.common import is_mlflow_error
from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.client.rest import mlflow_error
from mlflow_governance.core import environment_variables as ev
from mlflow_governance.core import settings, workflow


@click.command("server")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Configuration file (see governance.env.example); default $MLGOV_CONFIG.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes; the databases are migrated once before they start.")
@click.option("--dry-run", is_flag=True, help="Print the mlflow server command instead of running it.")
def server(config_file: Path | None, host: str, port: int, workers: int, dry_run: bool) -> None:
    """Start `mlflow server --app-name governance` from the configuration file.

    The registry and user databases are checked and migrated here, once, before the workers
    start (a database that does not answer: one line naming it, exit 6). GET /health answers
    while the process runs; GET /health/ready (no credentials) answers 200, or 503 naming the
    database that is down.
    """
    try:
        settings.load(config_file)
    except settings.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    registry = ev.MLFLOW_REGISTRY_STORE_URI.get() or ""
    backend = ev.MLFLOW_BACKEND_STORE_URI.get() or registry.removeprefix("governed-")
    if not registry.startswith("governed-"):
        raise mlflow_error(
            f"{ev.MLFLOW_REGISTRY_STORE_URI} must be governed-sqlite:///... or governed-postgresql://...",
            "INVALID_PARAMETER_VALUE",
        )
    if not ev.MLFLOW_FLASK_SERVER_SECRET_KEY.get():
        ev.MLFLOW_FLASK_SERVER_SECRET_KEY.set(secrets.token_hex(32))
    from mlflow.environment_variables import MLFLOW_SERVER_CORS_ALLOWED_ORIGINS

    origins = ev.MLGOV_ALLOWED_ORIGINS.get()
    if origins and not MLFLOW_SERVER_CORS_ALLOWED_ORIGINS.is_set():
        # MLflow's own CORS check must let the listed origins through to ours.
        MLFLOW_SERVER_CORS_ALLOWED_ORIGINS.set(",".join(origins))
    from mlflow_governance.server.app import check_settings

    check_settings()
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--app-name", "governance",
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--backend-store-uri", backend, "--registry-store-uri", registry,
    ]
    if artifacts := ev.MLFLOW_ARTIFACTS_DESTINATION.get():
        cmd += ["--artifacts-destination", artifacts]
    if dry_run:
        click.echo(" ".join(cmd))
        return
    from mlflow_governance.server.databases import auth_database_uri, migrate

    # Here, not in each worker: concurrent workers would race MLflow's auth-database migration.
    migrate(registry, backend, auth_database_uri())
    os.execv(sys.executable, cmd)


@click.group("users")
def users() -> None:
    """Manage users (admin): add needs MLFLOW_TRACKING_URI=http(s)://...; set-contact works locally too."""


def _check_roles(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """Every --role must be a governance role: checked while parsing, before the password prompt."""
    for role in value:
        if role not in workflow.ALL_ROLES:
            close = difflib.get_close_matches(role, workflow.ALL_ROLES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"unknown role {role!r}{hint}; valid roles: {', '.join(workflow.ALL_ROLES)}")
    return tuple(dict.fromkeys(value))  # a role named twice is granted once


def _undo(client: GovernanceClient, username: str, granted: list[str]) -> list[str]:
    """Revoke the roles granted, then delete the user; the problems met on the way."""
    problems = []
    for role in reversed(granted):
        try:
            client.revoke(username, role)
        except Exception as exc:  # noqa: BLE001 - reported, the user is still deleted
            problems.append(f"revoking {role}: {getattr(exc, 'message', exc)}")
    try:
        client.backend.delete_user(username)
    except Exception as exc:  # noqa: BLE001 - reported
        problems.append(f"deleting the user: {getattr(exc, 'message', exc)}")
    return problems


@users.command("add")
@click.argument("username")
@click.option("--role", "roles", multiple=True, callback=_check_roles,
              help=f"Governance role to grant right away (repeatable): {', '.join(workflow.ALL_ROLES)}.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="The new user's password.")
def users_add(username: str, password: str, roles: tuple[str, ...]) -> None:
    """Create USERNAME on the governance server (MLflow basic-auth), optionally with roles.

    All or nothing: every --role is checked before anything is created (exit 2 on an unknown
    role); an existing user is refused (exit 3, "user NAME already exists": grant roles to it
    with `mlgov roles grant`); if granting a role fails, the roles already granted are revoked
    and the user is deleted again before the error is reported.
    """
    client = GovernanceClient()
    if not client.remote:
        raise mlflow_error("users live on the governance server: set MLFLOW_TRACKING_URI to its http(s):// URL",
                           "INVALID_PARAMETER_VALUE")
    backend = client.backend
    exists = f"user {username} already exists (give it roles with: mlgov roles grant {username} ROLE)"
    if backend.get_user(username) is not None:
        raise mlflow_error(exists, "RESOURCE_CONFLICT")
    try:
        backend.add_user(username, password)
    except Exception as exc:
        if not is_mlflow_error(exc):
            raise
        if exc.error_code == "RESOURCE_ALREADY_EXISTS":  # created meanwhile by someone else
            raise mlflow_error(exists, "RESOURCE_CONFLICT") from None
        from mlflow_governance.server.users import clean_message

        # An older server may still send the database's error text (SQL, the password hash).
        raise mlflow_error(clean_message(exc.message, exc.error_code, username), exc.error_code) from None
    granted: list[str] = []
    role = None
    try:
        for role in roles:
            if client.grant(username, role):
                granted.append(role)
    except (Exception, KeyboardInterrupt) as exc:
        problems = _undo(client, username, granted)
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        message = f"granting {role} to {username} failed: {reason}; "
        if problems:
            message += (f"undoing it failed too ({'; '.join(problems)}): delete user {username} and revoke "
                        f"{', '.join(granted) or 'no role'} by hand")
        else:
            message += f"user {username} was not created (removed again)"
        raise mlflow_error(message, getattr(exc, "error_code", None)) from None
    click.echo(f"user {username} created")
    for role in roles:
        click.echo(f"{'granted' if role in granted else 'already held'}: {username} {role}")


def register(cli: click.Group) -> None:
    cli.add_command(server)
    cli.add_command(users)
