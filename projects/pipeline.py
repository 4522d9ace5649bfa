"""MLproject entry point ``pipeline``: the stage jobs of one model, each as its own user.

``mlflow run . -e pipeline --env-manager local -P model=NAME -P data_engineer=USER -P developer=USER
-P validator=USER [-P monitor=USER -P payload_url=URL] -P flights_url=... -P airports_url=...
-P validation_data=PATH [-P wait_seconds=N]``

Reads the model's governance status and runs whichever of ``acquire``, ``train``, ``validate``
and ``monitor`` is due (`mlflow_governance.pipeline`), each as its own MLflow run; stops (exit 0)
where the next move belongs to a person, naming the role. Errors are one line and an exit code:
2 bad input, 3 refused, 4 unknown model, or the failed step's own code.

Database passwords never go in ``-P`` (MLflow records every ``-P`` value, here and in each stage
run, as a run parameter): give the URLs without them and set ``MLGOV_DB_PASSWORD_FLIGHTS``,
``MLGOV_DB_PASSWORD_AIRPORTS`` and ``MLGOV_DB_PASSWORD_PAYLOAD`` (or, for PostgreSQL,
``PGPASSWORD`` / ``~/.pgpass``) in the environment; the stages inherit it. A URL with a password
or a secret query value is refused (exit 2, one line) and erased from the pipeline run's recorded
parameters (`mlflow_governance.project_secrets`), before any stage starts.
"""

from __future__ import annotations

import pathlib
import sys

# `mlflow run <checkout>` runs this file from that checkout: use its package, not another install.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse
import math

import click

from mlflow_governance.cli.common import GovernanceGroup
from mlflow_governance.pipeline import STEPS, PipelineParams, StepFailed, run_pipeline
from mlflow_governance.project_secrets import refuse_secrets

PROJECT = pathlib.Path(__file__).resolve().parents[1]
TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}


def bad_input(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    for name in ("flights-url", "airports-url", "validation-data", "validation-config", "payload-url"):
        parser.add_argument(f"--{name}", default="")
    parser.add_argument("--months", default=",".join(str(m) for m in range(1, 13)))
    parser.add_argument("--quick", default="false")
    parser.add_argument("--wait-seconds", default="0")
    for step in STEPS:
        parser.add_argument(f"--{step.user_param.replace('_', '-')}", default="", help=f"the {step.role}")
    args = parser.parse_args(argv)
    refuse_secrets({"flights_url": args.flights_url, "airports_url": args.airports_url,
                    "payload_url": args.payload_url}, entry="pipeline")
    quick = args.quick.strip().lower()
    if quick not in TRUE | FALSE:
        bad_input(f"quick must be true or false, not {args.quick!r}")
    try:
        wait_seconds = float(args.wait_seconds)
    except ValueError:
        wait_seconds = math.nan
    if not math.isfinite(wait_seconds) or wait_seconds < 0:
        bad_input(f"wait_seconds must be a number of seconds, 0 or more, not {args.wait_seconds!r}")
    params = PipelineParams(
        model=args.model.strip(), flights_url=args.flights_url, airports_url=args.airports_url, months=args.months,
        validation_data=args.validation_data, validation_config=args.validation_config,
        payload_url=args.payload_url, quick=quick in TRUE, wait_seconds=wait_seconds,
        users={step.user_param: getattr(args, step.user_param).strip() for step in STEPS},
    )

    @click.group(cls=GovernanceGroup)
    def cli() -> None:
        """Error handling of the mlgov CLI: a message and a non-zero exit, no traceback."""

    @cli.command("pipeline")
    def pipeline() -> None:
        try:
            run_pipeline(params, str(PROJECT), echo=lambda line: click.echo(line))
        except StepFailed as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)

    cli.main(["pipeline"], prog_name="mlflow run -e pipeline", standalone_mode=True)


if __name__ == "__main__":
    main(sys.argv[1:])
