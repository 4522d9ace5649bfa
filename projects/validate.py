"""MLproject entry point ``validate``:
``mlflow run . -e validate -P model=NAME -P version=N -P data=PATH_OR_URI [-P config=FILE] [-P override_comment=TEXT]
[-P smoke_test=true | -P smoke_url=URL]``.

Runs ``mlgov validate`` inside the run that ``mlflow run`` started, as the acting ModelValidator;
refusals print one line and exit 3 (MLflow then marks the run FAILED), a breach exits 5, a failed
UAT smoke test 7.
"""

from __future__ import annotations

import pathlib
import sys

# `mlflow run <checkout>` runs this file from that checkout: use its package, not another install.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse

import click

from mlflow_governance.cli.common import GovernanceGroup
from mlflow_governance.cli.validation import register

TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", default="")
    parser.add_argument("--override-comment", default="")
    parser.add_argument("--smoke-test", default="false")
    parser.add_argument("--smoke-url", default="")
    args = parser.parse_args(argv)
    smoke_test = args.smoke_test.strip().lower()
    if smoke_test not in TRUE | FALSE:
        parser.error(f"smoke_test must be true or false, not {args.smoke_test!r}")

    @click.group(cls=GovernanceGroup)
    def cli() -> None:
        pass

    register(cli)
    command = ["validate", "--model", args.model, "--version", args.version, "--data", args.data]
    if args.config.strip():
        command += ["--config", args.config]
    if args.override_comment.strip():
        command += ["--override-comment", args.override_comment]
    if smoke_test in TRUE:
        command.append("--smoke-test")
    if args.smoke_url.strip():
        command += ["--smoke-url", args.smoke_url.strip()]
    cli.main(command, prog_name="mlflow run -e validate", standalone_mode=True)


if __name__ == "__main__":
    main(sys.argv[1:])
