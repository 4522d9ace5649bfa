"""Benchmark: the governed sidecar (``mlgov serve``), without and with authentication, against
``mlflow models serve``: same model, same load.

Trains a histogram gradient boosting pipeline on January and February flights, logs it the way
``mlgov train`` does (skops, signature, drift detection model, training statistics), registers it
in a throw-away governed SQLite registry and walks it to Ready to Use. Then, one after the other
on 127.0.0.1:

* ``mlgov serve --no-auth`` on the local registry (development mode, nobody authenticated): the
  baseline of the authenticated sidecar. Defaults otherwise: 2 workers of 8 threads,
  micro-batching within 2 ms, payload logging to SQLite, the governance gate and the production
  monitor on (every 1,000 rows or 20 s);
* ``mlgov serve`` authenticated, the same defaults: a governance server (``mlgov server``, one
  worker, on the same SQLite registry, a random admin password) gets two basic-auth users, the
  sidecar's own identity (``monitor``, the registry's ModelMonitor) and a scoring client
  (``scorer``, no governance role: the server's default permission gives it READ). The sidecar
  reads governance from that server as ``monitor`` and asks it who each caller is, remembering
  the answer per worker for ``--auth-cache-seconds``; every request carries scorer's
  ``Authorization: Basic`` header. Its CPU per request includes the governance server's;
* ``mlflow models serve -m models:/NAME/N --env-manager local -w 2``.

Each gets the same load: single-row and 100-row ``dataframe_split`` requests (distinct real
flights from the training months, rotated), 8 concurrent keep-alive clients, after a warm-up,
``--runs`` runs of ``--duration`` seconds each with wrk (a Lua script supplies the bodies and,
from the environment, the credentials); without wrk, a Python load generator sends a fixed number
of requests per run instead, and says so. Prints a markdown table of the medians over the runs:
requests/s, p50 and p99 latency, the CPU time each server's processes spent per request (steadier
than throughput on a shared machine), the throughput ratio of the authenticated sidecar to the
``--no-auth`` one and of each server to ``mlflow models serve``. No password is printed or put on a
command line.

    .venv/bin/python benchmarks/serve.py [--runs 3] [--duration 10] [--requests 2000]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
MODEL = "bench-delay"
USERS = {"ModelOwner": "owner", "ModelApprover": "approver", "ModelDataEngineer": "engineer",
         "ModelDeveloper": "developer", "ModelValidator": "validator", "ModelDeployer": "deployer",
         "ModelMonitor": "monitor"}
MONITOR = USERS["ModelMonitor"]  # the authenticated sidecar's own identity
SCORER = "scorer"  # the scoring client of the authenticated sidecar: a user without a governance role
NO_AUTH = "mlgov serve --no-auth"
AUTHENTICATED = "mlgov serve (authenticated)"
MLFLOW_SERVE = "mlflow models serve"
CLIENTS = 8
AUTH_ENV = "BENCH_AUTHORIZATION"  # the Authorization header the load sends (unset: none)
WRK_SCRIPT = """
local bodies = {}
local headers = {["Content-Type"] = "application/json", ["Authorization"] = os.getenv("BENCH_AUTHORIZATION")}
local i = 0
init = function(args)
  for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
end
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/invocations", headers, bodies[i])
end
"""


# --- the model ---------------------------------------------------------------------------------


def act(user: str) -> None:
    os.environ["MLGOV_USER"] = user


def field_value(name: str, model: str, version: int | None) -> str:
    return {"training_data_quality_flag": "acceptable", "model_quality": "roc_auc=0.9", "validation_verdict": "pass",
            "moved_to_production": "yes", "model_asset": f"models:/{model}/{version}",
            "training_data_asset": "file:///benchmark/training.parquet"}.get(name, f"benchmark {name}")


def walk(client, model: str, version: int | None) -> None:
    """Take the happy path from the current stage until there is none (each step as its role's user)."""
    from mlflow_governance.core import workflow as wf

    scope = wf.VERSION_SCOPE if version is not None else wf.MODEL_SCOPE
    path = [r for r in wf.TRANSITIONS if r.action in (wf.APPROVE, wf.SUBMIT) and r.dest != r.source
            and r.scope == scope]
    while True:
        status = client.status(model, version)
        stage = status["version"]["stage"] if version is not None else status["stage"]
        row = next((r for r in path if r.source == stage), None)
        if row is None or (version is None and stage == wf.APPROVED_FOR_DEVELOPMENT):
            return
        act(USERS[row.role])
        client.transition(model, row.action, version, {f: field_value(f, model, version) for f in row.fields},
                          comment="benchmark")


def build_registry(workdir: Path) -> tuple[int, list[list]]:
    """A governed registry in ``workdir`` with MODEL's version 1 Ready to Use; (version, holdout rows)."""
    import mlflow
    import pandas as pd
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from mlflow_governance.airline.flights import source_tables
    from mlflow_governance.client.governance import GovernanceClient
    from mlflow_governance.core.features import FEATURES
    from mlflow_governance.training.data import label_rows, split
    from mlflow_governance.training.pipeline import build_pipeline
    from mlflow_governance.training.register import development_run, publish

    db = workdir / "mlflow.db"
    os.environ.update({"MLFLOW_TRACKING_URI": f"sqlite:///{db}", "MLFLOW_REGISTRY_URI": f"governed-sqlite:///{db}",
                       "MLGOV_ADMIN": "admin", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    SqlAlchemyStore(f"sqlite:///{db}", str(workdir / "artifacts"))
    client = GovernanceClient()
    act("admin")
    for role, user in USERS.items():
        client.grant(user, role)
    act("owner")
    client.initiate(MODEL, use_case="flight delay prediction (benchmark)", risk_tier="low")
    walk(client, MODEL, None)

    flights, airports = source_tables([1, 2])
    data = label_rows(flights.merge(airports, on="FLIGHT_ID"))
    s = split(data, seed=42)
    params = {"learning_rate": 0.1, "max_iter": 100, "max_leaf_nodes": 31}
    primary = build_pipeline("hist_gradient_boosting", params, 42).fit(s.X_train, s.y_train)
    board = pd.DataFrame([{"candidate": f"hist_gradient_boosting({params})", "family": "hist_gradient_boosting"}])
    act("developer")
    mlflow.set_experiment("benchmark")
    with development_run(MODEL, "benchmark", "benchmark model") as run:
        result = publish(client, MODEL, run, primary, data, s, board, "roc_auc", "benchmarks/serve.py",
                         "flights January-February")
    walk(client, MODEL, result.version)
    assert client.status(MODEL)["production_version"] == result.version
    holdout = s.X_test.dropna(subset=["DEPARTURE_DELAY"])
    rows = json.loads(holdout[list(FEATURES)].to_json(orient="values"))
    return result.version, rows


def write_bodies(rows: list[list], size: int, path: Path) -> Path:
    """One request body per line, together covering the held-out flights once (realistic traffic
    for the production monitor, which evaluates it all along)."""
    from mlflow_governance.core.features import FEATURES

    with open(path, "w") as out:
        for start in range(0, len(rows) - size + 1, size):
            out.write(json.dumps({"dataframe_split": {"columns": list(FEATURES),
                                                      "data": rows[start:start + size]}}) + "\n")
    return path


# --- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_headers(authorization: str | None) -> dict[str, str]:
    return {"Content-Type": "application/json", **({"Authorization": authorization} if authorization else {})}


def wait_ready(port: int, proc: subprocess.Popen, body: str, authorization: str | None = None,
               timeout: float = 180) -> dict[str, str]:
    """Wait until the server scores ``body`` (sent with ``authorization``); the answer's headers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("POST", "/invocations", body, request_headers(authorization))
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return {k.lower(): v for k, v in response.getheaders()}
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"http://127.0.0.1:{port} did not score within {timeout}s")


def status_without_credentials(port: int, body: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/invocations", body, request_headers(None))
    response = conn.getresponse()
    response.read()
    return response.status


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def without_settings() -> dict[str, str]:
    """This process's environment without registry, identity or benchmark settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_", "PROMETHEUS_", "BENCH_"))}


@dataclass
class Governance:
    """A running governance server and the passwords of the users the benchmark added to it."""

    url: str
    proc: subprocess.Popen
    passwords: dict[str, str]

    def authorization(self, user: str) -> str:
        return basic_auth(user, self.passwords[user])

    def env(self, user: str) -> dict[str, str]:
        """What a process acting as ``user`` against this server needs (no local registry)."""
        return {**without_settings(), "MLGOV_ADMIN": "admin", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                "MLFLOW_TRACKING_URI": self.url, "MLFLOW_TRACKING_USERNAME": user,
                "MLFLOW_TRACKING_PASSWORD": self.passwords[user]}


@contextmanager
def governance_server(workdir: Path, timeout: float = 180) -> Iterator[Governance]:
    """``mlgov server`` (one worker) on the benchmark's SQLite registry, ready, with MONITOR and SCORER
    added as basic-auth users under random passwords; stopped (its process group) afterwards."""
    from mlflow_governance.client.rest import RestGovernance

    db = workdir / "mlflow.db"
    home = workdir / "governance-server"
    home.mkdir()
    admin_password = secrets.token_urlsafe(24)
    env = {**without_settings(), "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{db}",
           "MLFLOW_REGISTRY_STORE_URI": f"governed-sqlite:///{db}", "MLGOV_ADMIN": "admin",
           "MLGOV_ADMIN_PASSWORD": admin_password, "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
           # MLflow's job runner would start five huey consumers competing for the CPU; nothing here needs them
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / "server.log"
    cmd = [str(BIN / "mlgov"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlgov server exited with {proc.returncode} (log: {log})")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/health/ready")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlgov server not ready within {timeout}s (log: {log})")
            time.sleep(0.3)
        passwords = {user: secrets.token_urlsafe(24) for user in (MONITOR, SCORER)}
        admin = RestGovernance(url, "admin", admin_password)
        for user, password in passwords.items():
            admin.add_user(user, password)
        yield Governance(url, proc, passwords)
    finally:
        stop(proc)


def start_sidecar(home: Path, port: int, env: dict[str, str], *options: str) -> subprocess.Popen:
    """``mlgov serve`` with its defaults (2 workers) in ``home`` (its own payload database and spool)."""
    home.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "mlgov"), "serve", "--model", MODEL, "--host", "127.0.0.1", "--port", str(port),
           "--workers", "2", *options]
    with open(home / "sidecar.log", "w") as out:
        return subprocess.Popen(cmd, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def start_mlflow(workdir: Path, version: int, port: int) -> subprocess.Popen:
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}/{version}", "--env-manager", "local",
           "-w", "2", "-h", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop(AUTH_ENV, None)
    with open(workdir / "mlflow-serve.log", "w") as out:
        return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# --- load --------------------------------------------------------------------------------------


def group_cpu_seconds(pgids: set[int]) -> float:
    """CPU time (user + system) used so far by the live processes of the process groups ``pgids``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids:  # fields after the command: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(port: int, bodies: Path, duration: float, script: Path, authorization: str | None) -> dict[str, float]:
    """One wrk run; the credentials reach the Lua script through the environment, not the command line."""
    env = {**without_settings(), "BENCH_BODIES": str(bodies), **({AUTH_ENV: authorization} if authorization else {})}
    out = subprocess.run(["wrk", "-t2", f"-c{CLIENTS}", f"-d{duration:g}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/invocations"], env=env,
                         capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _seconds(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _seconds(re.search(r"\s99%\s+(\S+)", out).group(1))
    count = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in errors.groups()) if errors else 0)
    return {"rps": rps, "p50": p50, "p99": p99, "failed": failed, "requests": count}


def run_python(port: int, bodies: Path, requests_total: int, authorization: str | None) -> dict[str, float]:
    """Fallback load generator: CLIENTS keep-alive connections, a fixed number of requests."""
    lines = bodies.read_text().splitlines()
    headers = request_headers(authorization)
    latencies: list[float] = []
    failed = [0]
    lock = threading.Lock()
    per_client = requests_total // CLIENTS

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for i in range(per_client):
            started = time.perf_counter()
            try:
                conn.request("POST", "/invocations", lines[(k + i) % len(lines)], headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                ok = False
            mine.append(time.perf_counter() - started)
            if not ok:
                with lock:
                    failed[0] += 1
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99) - 1], "failed": failed[0], "requests": len(latencies)}


def measure(port: int, pgids: set[int], bodies: Path, args: argparse.Namespace, script: Path | None,
            authorization: str | None) -> dict[str, float]:
    """Medians over the runs, and the server's CPU time per request (every process of its groups:
    workers, master, for the sidecar the production monitor, for the authenticated one also the
    governance server), which other load on the machine disturbs less than throughput."""
    def load() -> dict[str, float]:
        cpu = group_cpu_seconds(pgids)
        r = run_wrk(port, bodies, args.duration, script, authorization) if script else \
            run_python(port, bodies, args.requests, authorization)
        r["cpu_ms"] = 1000 * (group_cpu_seconds(pgids) - cpu) / max(1, r["requests"])
        return r

    if script:
        run_wrk(port, bodies, args.warmup, script, authorization)
    else:
        run_python(port, bodies, CLIENTS * 20, authorization)
    runs = [load() for _ in range(args.runs)]
    return {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "cpu_ms")} | \
        {"failed": sum(r["failed"] for r in runs), "all_rps": [round(r["rps"], 1) for r in runs]}


def bench(name: str, proc: subprocess.Popen, port: int, sizes: dict[str, Path], args: argparse.Namespace,
          script: Path | None, results: dict[tuple[str, str], dict[str, float]], authorization: str | None = None,
          also: tuple[int, ...] = (), authenticated: bool | None = None) -> None:
    """Wait for the server at ``port``, check it authenticates as it should (``authenticated`` None:
    not a sidecar), measure each request size; the server is stopped afterwards."""
    from mlflow_governance.sidecar.access import NO_AUTH_HEADER

    try:
        first = sizes["1 row"].read_text().splitlines()[0]
        headers = wait_ready(port, proc, first, authorization)
        if authenticated is not None and (NO_AUTH_HEADER.lower() in headers) == authenticated:
            raise RuntimeError(f"{name}: the {NO_AUTH_HEADER} header says it is {'not ' * authenticated}authenticating")
        if authenticated and (code := status_without_credentials(port, first)) != 401:
            raise RuntimeError(f"{name}: a request without credentials got HTTP {code}, not 401")
        for size, bodies in sizes.items():
            results[(name, size)] = measure(port, {proc.pid, *also}, bodies, args, script, authorization)
            print(f"{name}, {size}: {results[(name, size)]}", file=sys.stderr)
    finally:
        stop(proc)


def main() -> None:
    from mlflow_governance.sidecar import DEFAULT_AUTH_CACHE_SECONDS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of wrk warm-up per server and size")
    parser.add_argument("--requests", type=int, default=2000, help="requests per run without wrk")
    parser.add_argument("--auth-cache-seconds", type=float, default=DEFAULT_AUTH_CACHE_SECONDS,
                        help="the authenticated sidecar's --auth-cache-seconds (its default)")
    parser.add_argument("--no-monitor", action="store_true",
                        help="both sidecars without the production monitor (to see what the monitor costs)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, databases)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    wrk = shutil.which("wrk")
    workdir = Path(tempfile.mkdtemp(prefix="mlgov-bench-serve-"))
    try:
        started = time.perf_counter()
        version, rows = build_registry(workdir)
        print(f"registered models:/{MODEL}/{version} (Ready to Use) in {time.perf_counter() - started:.0f}s",
              file=sys.stderr)
        sizes = {"1 row": write_bodies(rows, 1, workdir / "one.jsonl"),
                 "100 rows": write_bodies(rows, 100, workdir / "hundred.jsonl")}
        script = None
        if wrk:
            script = workdir / "post.lua"
            script.write_text(WRK_SCRIPT)
        else:
            print("wrk not found (make bench-tools, or apt-get install wrk): using the Python load generator, a fixed "
                  f"{args.requests} requests per run", file=sys.stderr)
        results: dict[tuple[str, str], dict[str, float]] = {}

        monitor = ["--monitor-every-rows", "0", "--monitor-every-seconds", "0"] if args.no_monitor else []
        # The governance server runs (and its CPU counts) for both sidecars, so that the two differ in
        # what the sidecar does, not in what else shares the two cores.
        with governance_server(workdir) as governance:
            print(f"governance server on {governance.url}: users {MONITOR!r} (the sidecar) and {SCORER!r} (the load)",
                  file=sys.stderr)
            # 1. the local registry, nobody authenticated (development mode): the baseline
            port = free_port()
            local = {**os.environ, "MLGOV_USER": MONITOR}
            local.pop(AUTH_ENV, None)
            bench(NO_AUTH, start_sidecar(workdir / "sidecar-no-auth", port, local, "--no-auth", *monitor), port, sizes, args,
                  script, results, also=(governance.proc.pid,), authenticated=False)
            # 2. the same registry behind the governance server, every caller authenticated by it
            port = free_port()
            proc = start_sidecar(workdir / "sidecar-auth", port, governance.env(MONITOR),
                                 "--auth-cache-seconds", f"{args.auth_cache_seconds:g}", *monitor)
            bench(AUTHENTICATED, proc, port, sizes, args, script, results, governance.authorization(SCORER),
                  also=(governance.proc.pid,), authenticated=True)
        # 3. MLflow's own scoring server
        port = free_port()
        bench(MLFLOW_SERVE, start_mlflow(workdir, version, port), port, sizes, args, script, results)

        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
            else platform.processor()
        generator = f"wrk -t2 -c{CLIENTS}, {args.runs} runs of {args.duration:g} s" if wrk else \
            f"Python, {CLIENTS} keep-alive clients, {args.runs} run(s) of {args.requests} requests"
        print(f"\n{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; load: {generator}; "
              f"medians over the runs. The authenticated sidecar asks a governance server (mlgov server, 1 worker, "
              f"same SQLite registry) who each caller is, answers cached {args.auth_cache_seconds:g} s per worker; "
              "the governance server runs during both sidecars' measurements and its CPU counts for both.\n")
        print("| Server | Request | Requests/s | p50 (ms) | p99 (ms) | Server CPU per request (ms) | "
              "Throughput vs --no-auth | Throughput vs mlflow models serve |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for (name, size), r in results.items():
            base = results[(MLFLOW_SERVE, size)]["rps"]
            vs_no_auth = f"{r['rps'] / results[(NO_AUTH, size)]['rps']:.2f}x" if name != MLFLOW_SERVE else ""
            note = f" ({int(r['failed'])} failed)" if r["failed"] else ""
            print(f"| {name} | {size} | {r['rps']:.0f}{note} | {r['p50'] * 1000:.1f} | {r['p99'] * 1000:.1f} | "
                  f"{r['cpu_ms']:.1f} | {vs_no_auth} | {r['rps'] / base:.2f}x |")
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
