"""MLproject entry point ``monitor``: ``mlflow run . -e monitor -P model=NAME -P payload_url=URL [-P version=N]``.

Runs ``mlgov monitor`` (one production-monitor evaluation over the payload table) as the acting
ModelMonitor; exit 5 when the window breached (usability is then reject).
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--payload-url", required=True)
    parser.add_argument("--version", default="")
    parser.add_argument("--window-rows", default="5000")
    args = parser.parse_args(argv)

    @click.group(cls=GovernanceGroup)
    def cli() -> None:
        pass

    register(cli)
    command = ["monitor", "--model", args.model, "--payload-url", args.payload_url, "--window-rows", args.window_rows]
    if args.version.strip():
        command += ["--version", args.version]
    cli.main(command, prog_name="mlflow run -e monitor", standalone_mode=True)


if __name__ == "__main__":
    main(sys.argv[1:])
