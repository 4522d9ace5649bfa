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

from mlflow_governance.cli.mlproject import EntryPoint, Param
from mlflow_governance.cli.validation import register

ENTRY = EntryPoint("validate", __doc__, [
    Param("model"),
    Param("version"),
    Param("data"),
    Param("config", "", pass_as="optional"),
    Param("override_comment", "", pass_as="optional"),
    Param("smoke_test", "false", pass_as="flag"),
    Param("smoke_url", "", pass_as="optional", strip=True),
], register=register)
main = ENTRY.main


if __name__ == "__main__":
    main(sys.argv[1:])
