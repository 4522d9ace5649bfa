"""``mlgov demo``: the main job, one model from candidacy to production on embedded SQLite."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-output"),
              show_default=True, help="Folder for the databases, artifacts and fact sheet (re-created).")
@click.option("--months", default="1,2", show_default=True, help="Months the model is trained on.")
@click.option("--validation-month", type=click.IntRange(1, 12), default=4, show_default=True)
@click.option("--full-search", is_flag=True, help="The full model search instead of the quick one.")
def demo(workdir: Path, months: str, validation_month: int, full_search: bool) -> None:
    """The whole governed lifecycle with seven users: approvals, acquisition, training, validation, serving,
    drift refusal and decommissioning, then an outside model through the same gates."""
    from mlflow_governance.airline.flights import parse_months
    from mlflow_governance.demo import walkthrough

    if validation_month in parse_months(months):
        raise click.BadParameter("the validation month must not be a training month", param_hint="--validation-month")
    walkthrough.run(workdir, months, validation_month, quick=not full_search, echo=click.echo)


def register(cli: click.Group) -> None:
    cli.add_command(demo)
