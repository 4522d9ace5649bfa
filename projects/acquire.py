"""MLproject entry point ``acquire``: ``mlflow run . -e acquire --env-manager local -P ...``.

The same step as ``mlgov acquire``: join the flights and airports databases into a profiled
Parquet training set, logged to the run that ``mlflow run`` started, and (with ``-P model=NAME``)
recorded on the governed model as the acting ModelDataEngineer (``MLGOV_USER``).

``-P output=/abs/path.parquet`` follows the rule of ``mlgov acquire --output``: an existing file
is replaced only with ``-P force=true``; a directory or a special file never (exit 2, one line,
before any database is read; the run ``mlflow run`` started is then marked FAILED).

Passwords never go in ``-P`` (MLflow records every ``-P`` value as a run parameter before this
file runs): give ``flights_url``/``airports_url`` without one and set ``MLGOV_DB_PASSWORD_FLIGHTS``
/ ``MLGOV_DB_PASSWORD_AIRPORTS`` (or, for PostgreSQL, ``PGPASSWORD`` / ``~/.pgpass``) in the
environment of ``mlflow run``. A URL with a password or a secret query value is refused (exit 2,
one line) and erased from the run's recorded parameters (`mlflow_governance.safe.project_secrets`).
"""

from __future__ import annotations

import pathlib
import sys

# `mlflow run <checkout>` runs this file from that checkout: use its package, not another install.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import os

import click

from mlflow_governance.cli.acquisition import acquire_options, run_acquire
from mlflow_governance.cli.mlproject import database_urls, entry_group

entry = entry_group()


@entry.command("acquire")
@acquire_options
@click.option("--force", type=click.BOOL, default=False, show_default=True,
              help="true: replace an existing output file (never a directory or a special file).")
def acquire(**kwargs) -> None:
    """Acquire, profile and catalogue the training set."""
    urls = {"flights_url": kwargs["flights_url"], "airports_url": kwargs["airports_url"]}
    kwargs.update(database_urls(urls, entry="acquire", passwords=tuple(urls)))
    if kwargs["output"] and not os.path.isabs(os.path.expanduser(kwargs["output"])):
        raise click.BadParameter(
            f"{kwargs['output']!r} is relative, but mlflow run executes in the project directory: "
            "give an absolute path (or none to keep the file only as the run's artifact)",
            param_hint="output",
        )
    run_acquire(**kwargs)


if __name__ == "__main__":
    entry(["acquire", *sys.argv[1:]], prog_name="projects/acquire.py")
