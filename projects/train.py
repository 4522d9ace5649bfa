"""MLproject entry point ``train``: ``mlflow run . -e train -P data=... -P model=... [-P quick=true]``.

Runs ``mlgov train`` inside the run that ``mlflow run`` started; errors print a message and
exit non-zero (MLflow then marks the run FAILED).
"""

from __future__ import annotations

import pathlib
import sys

# `mlflow run <checkout>` runs this file from that checkout: use its package, not another install.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse

import click

from mlflow_governance.cli.common import GovernanceGroup
from mlflow_governance.cli.training import register

TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="")
    parser.add_argument("--model", required=True)
    parser.add_argument("--quick", default="false")
    parser.add_argument("--metric", default="roc_auc")
    args = parser.parse_args(argv)
    quick = args.quick.strip().lower()
    if quick not in TRUE | FALSE:
        parser.error(f"quick must be true or false, not {args.quick!r}")

    @click.group(cls=GovernanceGroup)
    def cli() -> None:
        pass

    register(cli)
    command = ["train", "--model", args.model, "--metric", args.metric]
    if args.data.strip():
        command += ["--data", args.data]
    if quick in TRUE:
        command.append("--quick")
    cli.main(command, prog_name="mlflow run -e train", standalone_mode=True)


if __name__ == "__main__":
    main(sys.argv[1:])
