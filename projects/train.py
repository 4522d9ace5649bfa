"""MLproject entry point ``train``: ``mlflow run . -e train -P data=... -P model=... [-P quick=true]``.

Runs ``mlgov train`` inside the run that ``mlflow run`` started; errors print a message and
exit non-zero (MLflow then marks the run FAILED).
"""

from __future__ import annotations

import pathlib
import sys

# `mlflow run <checkout>` runs this file from that checkout: use its package, not another install.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from mlflow_governance.cli.mlproject import EntryPoint, Param
from mlflow_governance.cli.training import register

ENTRY = EntryPoint("train", __doc__, [
    Param("data", "", pass_as="optional"),
    Param("model"),
    Param("quick", "false", pass_as="flag"),
    Param("metric", "roc_auc"),
], register=register)
main = ENTRY.main


if __name__ == "__main__":
    main(sys.argv[1:])
