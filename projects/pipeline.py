"""MLproject entry point ``pipeline``: the stage jobs of one model, each as its own user.

``mlflow run . -e pipeline --env-manager local -P model=NAME -P data_engineer=USER -P developer=USER
-P validator=USER [-P monitor=USER -P payload_url=URL] -P flights_url=... -P airports_url=...
-P validation_data=PATH [-P wait_seconds=N]``

Reads the model's governance status and runs whichever of ``acquire``, ``train``, ``validate``
and ``monitor`` is due (`mlflow_governance.orchestration.pipeline`), each as its own MLflow run; stops (exit 0)
where the next move belongs to a person, naming the role. Errors are one line and an exit code:
2 bad input, 3 refused, 4 unknown model, or the failed step's own code.

Database passwords never go in ``-P`` (MLflow records every ``-P`` value, here and in each stage
run, as a run parameter): give the URLs without them and set ``MLGOV_DB_PASSWORD_FLIGHTS``,
``MLGOV_DB_PASSWORD_AIRPORTS`` and ``MLGOV_DB_PASSWORD_PAYLOAD`` (or, for PostgreSQL,
``PGPASSWORD`` / ``~/.pgpass``) in the environment; the stages inherit it. A URL with a password
or a secret query value is refused (exit 2, one line) and erased from the pipeline run's recorded
parameters (`mlflow_governance.safe.project_secrets`), before any stage starts.
"""

from __future__ import annotations

import pathlib
import sys

# `mlflow run <checkout>` runs this file from that checkout: use its package, not another install.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import math

import click

from mlflow_governance.cli.mlproject import EntryPoint, Param, bad_input, truth
from mlflow_governance.orchestration.pipeline import STEPS, PipelineParams, StepFailed, run_pipeline

PROJECT = pathlib.Path(__file__).resolve().parents[1]

ENTRY = EntryPoint("pipeline", __doc__, [
    Param("model"),
    Param("flights_url", "", url=True),
    Param("airports_url", "", url=True),
    Param("validation_data", ""),
    Param("validation_config", ""),
    Param("payload_url", "", url=True),
    Param("months", ",".join(str(m) for m in range(1, 13))),
    Param("quick", "false", pass_as="flag"),
    Param("wait_seconds", "0"),
    *(Param(step.user_param, "", help=f"the {step.role}") for step in STEPS),
], raw_description=True, bad_flag=bad_input)


def main(argv: list[str] | None = None) -> None:
    args = ENTRY.parse(argv)
    try:
        wait_seconds = float(args.wait_seconds)
    except ValueError:
        wait_seconds = math.nan
    if not math.isfinite(wait_seconds) or wait_seconds < 0:
        bad_input(f"wait_seconds must be a number of seconds, 0 or more, not {args.wait_seconds!r}")
    params = PipelineParams(
        model=args.model.strip(), flights_url=args.flights_url, airports_url=args.airports_url, months=args.months,
        validation_data=args.validation_data, validation_config=args.validation_config,
        payload_url=args.payload_url, quick=truth(args.quick), wait_seconds=wait_seconds,
        users={step.user_param: getattr(args, step.user_param).strip() for step in STEPS},
    )

    @click.command("pipeline")
    def pipeline() -> None:
        try:
            run_pipeline(params, str(PROJECT), echo=lambda line: click.echo(line))
        except StepFailed as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)

    ENTRY.run(["pipeline"], register=lambda group: group.add_command(pipeline))


if __name__ == "__main__":
    main(sys.argv[1:])
