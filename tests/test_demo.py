"""`mlgov demo` (what `make demo` runs): the walk-through, end to end, as a real process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_in_process import mlgov as mlgov_in_process

MLGOV = str(Path(sys.executable).parent / "mlgov")


def test_demo_plays_the_whole_lifecycle(demo_run, tmp_path):
    workdir, env, out = demo_run.workdir, demo_run.env, demo_run.stdout
    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    steps = re.findall(r"^\s*\d+\. (\w+)\s+(\w+)\s+(.*)$", out, flags=re.M)
    people = {user for user, role, _ in steps if role != "admin"}
    assert people == {"olivia", "adam", "erin", "devi", "victor", "dora", "mona"}
    assert "REFUSED (separation of duties" in out
    assert re.search(r"erin\s+ModelDataEngineer\s+acquire the winter months 1, 2: [\d,]+ rows joined", out), out
    assert "final approval of version 1 -> 'Ready to Use', usability 'accept', alias 'production' -> version 1" in out
    assert "chain intact; 7 different people moved the model" in out
    assert "# Fact sheet: airline-delay (MOD_000001)" in out
    sheet = (workdir / "factsheet.md").read_text()
    assert "| 1 | Decommissioned | - | devi |" in sheet and "| 2 | Ready to Use | accept | devi |" in sheet
    assert re.search(r"\| 1 \| model_quality \| roc_auc=0\.\d+ \|", sheet)
    # The validation is the real one: all four monitors, its report in a run, a REST smoke test.
    assert re.search(r"victor\s+ModelValidator\s+validate on spring month 4 \([\d,]+ rows\): (pass|breach) "
                     r"\(accuracy 0\.\d+, roc_auc 0\.\d+, estimated_accuracy\.value 0\.\d+, "
                     r"drift\.share_drifted 0\.\d+\); smoke test passed; report "
                     r"runs:/\w+/validation/report\.html", out), out
    assert re.search(r"\| 1 \| validation_verdict \| (pass|override) \|", sheet)
    assert re.search(r"\| 1 \| victor \| (PASS|OVERRIDE) \| runs:/\w+/validation/report\.html \|", sheet)
    # The deployment fields come from a sidecar that answered for the version, never typed by hand.
    endpoint = re.search(r"\| 1 \| endpoint \| (http://127\.0\.0\.1:\d+)/invocations \|", sheet).group(1)
    assert f"| 1 | monitoring_url | {endpoint}/status |" in sheet
    assert re.search(r"dora\s+ModelDeployer\s+mlgov deploy: version 1 answers at " + re.escape(endpoint), out)
    # Real traffic: winter flights scored, July flights until the drift monitor refuses; then 410.
    assert re.search(r"scores 1,000 winter flights: all HTTP 200 by version 1", out), out
    red = re.search(r"after ([\d,]+) July rows in (\d+) s the (\w+) monitor turned usability red as mona: "
                    r"HTTP 423 \"model execution not allowed: .*drift\.share_drifted = (0\.\d+) "
                    r"\(threshold <= 0\.25\)", out)
    assert red and red.group(3) == "drift" and float(red.group(4)) > 0.25, out
    assert "decommissions version 1 -> 'Decommissioned'; the sidecar answers HTTP 410" in out
    # The second path: a model trained outside, through the same gates, serving the July traffic.
    assert "outside team, in its own process: trained on" in out and (workdir / "outside" / "delay_model.skops").exists()
    assert re.search(r"devi\s+ModelDeveloper\s+import the outside model as version 2 \(roc_auc=0\.\d+\)", out)
    assert "final approval of version 2 -> 'Ready to Use', usability 'accept', alias 'production' -> version 2" in out
    assert "July flights scored by version 2" in out
    assert re.search(r"\| 2 \| development_system \| outside team", sheet)
    assert "placeholder" not in out and "Downloading artifacts" not in demo_run.stderr
    # Every process it started is gone; the trace it prints runs as printed.
    assert _processes_under(workdir) == []
    trace_line = next(line.strip() for line in out.splitlines() if " trace " in line and "--payload-url" in line)
    variables = dict(word.split("=", 1) for word in trace_line.split() if "=" in word and "://" in word
                     and not word.startswith("-"))
    argv = [word for word in trace_line.split() if word.split("=", 1)[0] not in variables]
    p = subprocess.run(argv, env={**env, **variables}, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "models:/airline-delay/1" in p.stdout and "== approvals [found]" in p.stdout
    # Everything the demo writes is under its work directory, and its closing commands run as printed.
    assert not (demo_run.cwd / "mlruns").exists() and list((workdir / "artifacts").rglob("report.html"))
    assert sorted(p.name for p in demo_run.cwd.iterdir()) == ["demo"]
    config = workdir / "governance.env"
    assert config.stat().st_mode & 0o777 == 0o600
    server_line = next(line.strip() for line in out.splitlines() if line.strip().endswith("--port 5000"))
    ui_line = next(line.strip() for line in out.splitlines() if " ui --backend-store-uri " in line)
    exe = ui_line.split()[0]
    assert exe.endswith("mlflow") and (Path(exe).is_file() if "/" in exe else shutil.which(exe)), ui_line
    _serve_and_browse(server_line, config, env, tmp_path)
    # The demo marks the folder it made (a later run may empty it); a foreign folder is refused.
    assert (workdir / ".mlgov-demo").exists()
    p = mlgov_in_process("demo", "--workdir", str(tmp_path), env=env, cwd=tmp_path)
    assert p.returncode == 2 and "was not made by the demo" in p.stderr


def _processes_under(workdir: Path) -> list[str]:
    """Command lines of running processes that name ``workdir`` (the demo's sidecars would)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(workdir) in cmdline and "pytest" not in cmdline:
            found.append(cmdline)
    return found


def _serve_and_browse(command: str, config: Path, env: dict, tmp_path: Path) -> None:
    """Run the demo's printed server command (on a free port) and sign in to the approvals page."""
    import requests

    from tests.conftest import free_port
    from tests.servers import wait_http

    port = free_port()
    argv = command.replace("--port 5000", f"--port {port}").split()
    if argv[0] == "mlgov":
        argv[0] = MLGOV
    password = next(line.split("=", 1)[1] for line in config.read_text().splitlines()
                    if line.startswith("MLGOV_ADMIN_PASSWORD="))
    log = tmp_path / "demo-server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc, log)
        page = requests.get(url + "/governance/", auth=("admin", password), timeout=30)
        assert page.status_code == 200 and "airline-delay" in page.text, page.text[:500]
        assert requests.get(url + "/governance/", timeout=30).status_code == 401
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.mark.parametrize("args", [["--months", "1,2", "--validation-month", "2"], ["--validation-month", "13"]])
def test_demo_rejects_bad_options(tmp_path, args):
    p = mlgov_in_process("demo", "--workdir", str(tmp_path / "d"), *args)
    assert p.returncode == 2 and "Error" in p.stderr and not (tmp_path / "d").exists()
