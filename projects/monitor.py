"""MLproject entry point ``monitor``: ``mlflow run . -e monitor -P model=NAME -P payload_url=URL [-P version=N]``.

Runs ``mlgov monitor`` (one production-monitor evaluation over the payload table) as the acting
ModelMonitor; exit 5 when the window breached (usability is then reject).

The payload database's password never goes in ``-P`` (MLflow records every ``-P`` value as a run
parameter before this file runs): give ``payload_url`` without one and set
``MLGOV_DB_PASSWORD_PAYLOAD`` (or, for PostgreSQL, ``PGPASSWORD`` / ``~/.pgpass``) in the
environment of ``mlflow run``. A URL with a password or a secret query value is refused (exit 2,
one line) and erased from the run's recorded parameters (`mlflow_governance.project_secrets`).
"""

from __future__ import annotations

import pathlib
import sys

# `mlflow run <checkout>` runs this file from that checkout: use its package, not another install.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse

import click

from mlflow_governance.cli.common import GovernanceGroup
from mlflow_governance.cli.monitoring import register
from mlflow_governance.project_secrets import refuse_secrets, with_password


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--payload-url", required=True)
    parser.add_argument("--version", default="")
    parser.add_argument("--window-rows", default="5000")
    args = parser.parse_args(argv)
    refuse_secrets({"payload_url": args.payload_url}, entry="monitor")
    try:
        payload_url = with_password(args.payload_url, "payload")
    except ValueError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)

    @click.group(cls=GovernanceGroup)
    def cli() -> None:
        pass

    register(cli)
    command = ["monitor", "--model", args.model, "--payload-url", payload_url, "--window-rows", args.window_rows]
    if args.version.strip():
        command += ["--version", args.version]
    cli.main(command, prog_name="mlflow run -e monitor", standalone_mode=True)


if __name__ == "__main__":
    main(sys.argv[1:])
