"""Benchmark: what authentication and governance cost over REST, four servers in one run.

One after the other, each on a free 127.0.0.1 port with a fresh SQLite database in its own
temporary directory, all with ``--workers 1`` (``--workers`` changes it for all four) and MLflow's
job runner off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``, as the tests do):

1. ``mlflow server``, no authentication;
2. ``mlflow server --app-name basic-auth`` with MLflow's own ``basic_auth.ini`` (the server runs
   in its directory, so the ini's relative ``sqlite:///basic_auth.db`` lands there);
3. the same with MLflow's opt-in credential cache: that ini plus ``auth_cache_ttl_seconds = 60``;
4. the governance server, ``mlgov server --config governance.env`` (governed SQLite registry; the
   admin password, like every password here, is random per run).

Calls, each checked for its HTTP status (and, for the approval, the stage it leads to):

* read: ``GET /api/2.0/mlflow/registered-models/get`` of an ungoverned model;
* plain tag write: ``POST /api/2.0/mlflow/registered-models/set-tag`` on that model;
* governance server only: a field fill (``POST /api/2.0/mlflow-governance/models/set-field``:
  the ModelDataEngineer fills the Data Acquisition step's first field on one model, a new value
  each time) and an approval (``POST .../models/transition`` action ``approve``: the
  ModelApprover approves a candidacy; a candidacy is approved once, so one model per request is
  put in Candidacy Review by the ModelOwner beforehand, outside the timed section; the timing
  starts once the server has fanned out the governance events of that set-up, which its delivery
  thread would otherwise do during the first timed cells).

Where authentication exists, the calls are made as non-admin users created through
``/api/2.0/mlflow/users/create``: the reader/writer holds an explicit EDIT permission on the
model (MLflow's unified permission API), the governance users hold governance roles
(``/roles/grant``). Each client is a keep-alive ``requests.Session`` with basic-auth credentials
that keeps the cookies a server sets, as MLflow's own client does (``--no-cookies`` refuses them).

Load: 1 client, then ``--concurrency`` client threads, a fixed number of requests per cell after a
short warm-up. Prints a markdown table (p50 and p99 by nearest rank over the successful requests,
requests/s, and the server's CPU time per request, which other load on the machine disturbs
less; it is read from /proc in clock ticks, so it is coarse over the few requests of
``--quick``), the ratios the targets of issue 13 name (on p50 and on server CPU), and the
machine. Failed requests are counted, listed and make the exit status 1; they never count as
answers.

    .venv/bin/python benchmarks/rest.py [--quick] [--requests 200] [--concurrent-requests 400]
        [--concurrency 8] [--warmup 10] [--workers 1] [--servers plain,basic,basic-cache,governance]
        [--gov-setting KEY=VALUE ...] [--no-cookies] [--keep]
"""

from __future__ import annotations

import argparse
import configparser
import http.cookiejar
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from mlflow_governance.core import workflow as wf

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
API = "/api/2.0/mlflow"
GOV = "/api/2.0/mlflow-governance"
PLAIN_MODEL = "bench-plain"  # ungoverned: read and plain tag write
FIELD_MODEL = "bench-field"  # governed, in Data Acquisition: field fills
ADMIN = "admin"
READER = "bench-user"  # a non-admin user with EDIT on PLAIN_MODEL
OWNER, APPROVER, ENGINEER = "bench-owner", "bench-approver", "bench-engineer"
ROLES = {OWNER: wf.MODEL_OWNER, APPROVER: wf.MODEL_APPROVER, ENGINEER: wf.MODEL_DATA_ENGINEER}
# The lifecycle rows the governed calls exercise, read from the table rather than spelled here.
CANDIDACY_APPROVAL = wf.find_transition(wf.CANDIDACY_REVIEW, wf.APPROVE, wf.MODEL_SCOPE)
ACQUISITION_SUBMIT = wf.find_transition(wf.DATA_ACQUISITION, wf.SUBMIT, wf.MODEL_SCOPE)
FIELD = ACQUISITION_SUBMIT.fields[0]
TIMEOUT = 120.0

SERVERS = {
    "plain": "mlflow server (no auth)",
    "basic": "MLflow basic-auth (default ini)",
    "basic-cache": "MLflow basic-auth (auth_cache_ttl_seconds = 60)",
    "governance": "governance server (mlgov server)",
}
READ, TAG, FILL, APPROVAL = "read (registered-models/get)", "plain tag write (set-tag)", \
    f"governed field fill (set-field {FIELD})", "governed approval (transition approve)"


def password() -> str:
    return secrets.token_urlsafe(18)  # 24 characters; MLflow's basic-auth needs at least 12


# --- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    key: str
    workdir: Path
    port: int
    proc: subprocess.Popen
    log: Path
    admin_password: str | None = None
    users: dict[str, str] = field(default_factory=dict)  # name -> password

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def auth(self, user: str) -> tuple[str, str] | None:
        if self.admin_password is None:
            return None
        return (ADMIN, self.admin_password) if user == ADMIN else (user, self.users[user])

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def server_env(workdir: Path, extra: dict[str, str]) -> dict[str, str]:
    """A clean environment: none of the caller's MLflow or governance settings leak into a server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    tmp = workdir / "tmp"  # the servers' own temporary files (the governance app's ini) stay inside
    tmp.mkdir(exist_ok=True)
    env.update({"TMPDIR": str(tmp), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    env.update(extra)
    return env


def start_server(key: str, root: Path, workers: int, gov_settings: dict[str, str]) -> Server:
    workdir = root / key
    workdir.mkdir()
    port = free_port()
    db = workdir / "mlflow.db"
    artifacts = workdir / "artifacts"
    common = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    admin_password = None if key == "plain" else password()
    secret = {"MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32)}
    if key == "governance":
        config = workdir / "governance.env"
        config.write_text(f"MLFLOW_BACKEND_STORE_URI=sqlite:///{db}\nMLFLOW_REGISTRY_STORE_URI=governed-sqlite:///{db}\n"
                          f"MLFLOW_ARTIFACTS_DESTINATION={artifacts}\nMLGOV_ADMIN={ADMIN}\n", encoding="utf-8")
        cmd = [str(BIN / "mlgov"), "server", "--config", str(config), *common]
        # The password from the environment, never the file; mlgov server makes the secret key.
        env = server_env(workdir, {"MLGOV_ADMIN_PASSWORD": admin_password, **gov_settings})
    else:
        cmd = [str(BIN / "mlflow"), "server", *common, "--backend-store-uri", f"sqlite:///{db}",
               "--artifacts-destination", str(artifacts)]
        env = server_env(workdir, {})
        if key != "plain":
            cmd += ["--app-name", "basic-auth"]
            env.update(secret, MLFLOW_AUTH_ADMIN_PASSWORD=admin_password)
        if key == "basic-cache":
            ini = configparser.ConfigParser()
            if not ini.read(default_auth_ini()):
                raise RuntimeError(f"MLflow's {default_auth_ini()} is missing")
            ini["mlflow"]["auth_cache_ttl_seconds"] = "60"
            path = workdir / "basic_auth.ini"
            with open(path, "w", encoding="utf-8") as out:
                ini.write(out)
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(path)
    log = workdir / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(key, workdir, port, proc, log, admin_password)
    try:
        wait_ready(server)
    except BaseException:
        stop(server)
        raise
    return server


def default_auth_ini() -> Path:
    """MLflow's own ``basic_auth.ini``, found without importing its auth app (which reads its config)."""
    import importlib.util

    return Path(importlib.util.find_spec("mlflow").origin).parent / "server" / "auth" / "basic_auth.ini"


def wait_ready(server: Server, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{SERVERS[server.key]} exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            if requests.get(server.url + "/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{SERVERS[server.key]} did not answer /health within {timeout:g}s:\n{server.log_tail()}")


def stop(server: Server) -> None:
    """Terminate the server's process group, then kill it if it does not go."""
    if server.proc.poll() is None:
        try:
            os.killpg(server.proc.pid, signal.SIGTERM)
            server.proc.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(10)
    try:  # workers left behind by a supervisor that exited first
        os.killpg(server.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by the live processes of process group ``pgid``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # after the command: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# --- setup over REST (not timed) ----------------------------------------------------------------


def call_ok(server: Server, user: str | None, method: str, path: str, body: dict) -> dict:
    auth = server.auth(user) if user else None
    kwargs = {"params": body} if method == "GET" else {"json": body}
    r = requests.request(method, server.url + path, auth=auth, timeout=TIMEOUT, **kwargs)
    if r.status_code != 200:
        raise RuntimeError(f"setup {method} {path} as {user}: HTTP {r.status_code} {r.text[:300]}")
    return r.json() if r.content else {}


def prepare(server: Server, candidates: int, concurrency: int) -> str:
    """Users, permissions and models the timed calls need; returns a note on what it did."""
    if server.key == "plain":
        call_ok(server, None, "POST", f"{API}/registered-models/create", {"name": PLAIN_MODEL})
        return ""
    users = [READER] + (list(ROLES) if server.key == "governance" else [])
    for user in users:
        server.users[user] = password()
        call_ok(server, ADMIN, "POST", f"{API}/users/create", {"username": user, "password": server.users[user]})
    call_ok(server, ADMIN, "POST", f"{API}/registered-models/create", {"name": PLAIN_MODEL})
    call_ok(server, ADMIN, "POST", "/api/3.0/mlflow/users/permissions/grant",
            {"username": READER, "resource_type": "registered_model", "resource_id": PLAIN_MODEL, "permission": "EDIT"})
    if server.key != "governance":
        return ""
    for user, role in ROLES.items():
        call_ok(server, ADMIN, "POST", f"{GOV}/roles/grant", {"username": user, "role": role})
    initiate = {"use_case": "REST benchmark", "risk_tier": "low", "business_owner": "benchmarks/rest.py"}
    call_ok(server, OWNER, "POST", f"{GOV}/models/initiate", {"model": FIELD_MODEL, **initiate})
    call_ok(server, APPROVER, "POST", f"{GOV}/models/transition", {"model": FIELD_MODEL, "action": wf.APPROVE})
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: call_ok(server, OWNER, "POST", f"{GOV}/models/initiate",
                                        {"model": candidate(i), **initiate}), range(candidates)))
    prepared = time.perf_counter() - started
    settled = settle_events(server)
    return (f"{candidates} models put in {wf.CANDIDACY_REVIEW} beforehand for the approvals "
            f"({prepared:.0f} s, untimed); then {settled:.0f} s until the server had fanned out their "
            "governance events (its delivery thread would otherwise compete with the timed requests)")


def settle_events(server: Server, timeout: float = 300.0) -> float:
    """Wait until the governance server has no event left to fan out or deliver; seconds waited."""
    started = time.monotonic()
    while True:
        status = call_ok(server, ADMIN, "GET", f"{GOV}/events/status", {})
        if not status.get("undispatched") and not status.get("undelivered"):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"governance events not delivered after {timeout:g}s: {status}")
        time.sleep(0.5)


def candidate(i: int) -> str:
    return f"bench-candidate-{i:05d}"


# --- the calls ---------------------------------------------------------------------------------


@dataclass
class Call:
    """One benchmarked request: ``request(i)`` gives (method, path, body) for the i-th request of
    the run (unique across warm-up and cells), ``check`` says what is wrong with a response."""

    name: str
    user: str | None
    request: Callable[[int], tuple[str, str, dict]]
    check: Callable[[requests.Response], str | None] = lambda r: None
    counter: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter - 1


def approval_check(r: requests.Response) -> str | None:
    try:
        stage = r.json().get("stage")
    except ValueError:
        return "not JSON"
    return None if stage == CANDIDACY_APPROVAL.dest else f"stage {stage!r}, expected {CANDIDACY_APPROVAL.dest!r}"


def calls_for(server: Server) -> list[Call]:
    user = None if server.key == "plain" else READER
    calls = [
        Call(READ, user, lambda i: ("GET", f"{API}/registered-models/get", {"name": PLAIN_MODEL})),
        Call(TAG, user, lambda i: ("POST", f"{API}/registered-models/set-tag",
                                   {"name": PLAIN_MODEL, "key": "bench", "value": str(i)})),
    ]
    if server.key == "governance":
        calls += [
            Call(FILL, ENGINEER, lambda i: ("POST", f"{GOV}/models/set-field",
                                            {"model": FIELD_MODEL, "name": FIELD, "value": f"file:///bench/{i}.parquet"})),
            Call(APPROVAL, APPROVER, lambda i: ("POST", f"{GOV}/models/transition",
                                                {"model": candidate(i), "action": wf.APPROVE}), approval_check),
        ]
    return calls


# --- load --------------------------------------------------------------------------------------


@dataclass
class Cell:
    latencies: list[float]
    failures: list[str]
    elapsed: float
    cpu_ms: float
    cookies: set[str]

    def percentile(self, q: float) -> float:
        """Nearest rank over the successful requests (ms)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else float("nan")


def session_for(server: Server, call: Call, cookies: bool) -> requests.Session:
    s = requests.Session()
    s.auth = server.auth(call.user) if call.user else None
    if not cookies:
        s.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return s


def one(session: requests.Session, server: Server, call: Call) -> tuple[float, str | None]:
    method, path, body = call.request(call.take())
    kwargs = {"params": body} if method == "GET" else {"json": body}
    started = time.perf_counter()
    try:
        r = session.request(method, server.url + path, timeout=TIMEOUT, **kwargs)
        took = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 - a connection error, a timeout: a failed request, counted
        return time.perf_counter() - started, f"{type(exc).__name__}: {exc}"[:300]
    if r.status_code != 200:
        return took, f"HTTP {r.status_code}: {r.text[:300]}"
    try:
        problem = call.check(r)
    except Exception as exc:  # noqa: BLE001 - an answer that cannot be checked is a failure
        problem = f"unreadable answer ({type(exc).__name__}: {exc})"
    return took, (f"HTTP 200 but {problem}" if problem else None)


def run_cell(server: Server, call: Call, total: int, clients: int, warmup: int, cookies: bool) -> Cell:
    """``clients`` threads, each with its own keep-alive session, send ``warmup`` requests between
    them (at least one each, untimed), then ``total`` timed requests from a shared counter."""
    remaining = [total]
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    latencies: list[float] = []
    failures: list[str] = []
    cookie_names: set[str] = set()
    per_client_warmup = max(1, math.ceil(warmup / clients))

    def client() -> None:
        session = session_for(server, call, cookies)
        try:
            for _ in range(per_client_warmup):
                _, problem = one(session, server, call)
                if problem:
                    with lock:
                        failures.append(f"warm-up: {problem}")
        finally:
            barrier.wait()
        mine: list[float] = []
        while True:
            with lock:
                if remaining[0] == 0:
                    break
                remaining[0] -= 1
            took, problem = one(session, server, call)
            if problem:
                with lock:
                    failures.append(problem)
            else:
                mine.append(took)
        with lock:
            latencies.extend(mine)
            cookie_names.update(c.name for c in session.cookies)
        session.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    cpu, started = group_cpu_seconds(server.proc.pid), time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    cpu_ms = 1000 * (group_cpu_seconds(server.proc.pid) - cpu) / max(1, total)
    timed_failures = sum(1 for f in failures if not f.startswith("warm-up: "))
    if len(latencies) + timed_failures != total:  # a client thread died: never silently fewer requests
        failures.append(f"{total - len(latencies) - timed_failures} request(s) were not made (a client thread failed)")
    return Cell(latencies, failures, elapsed, cpu_ms, cookie_names)


def warmup_requests(warmup: int, clients: int) -> int:
    return clients * max(1, math.ceil(warmup / clients))


# --- report ------------------------------------------------------------------------------------


def machine() -> str:
    import mlflow

    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    return (f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, MLflow {mlflow.__version__}, "
            f"{platform.system()} {platform.release()}, code at {commit}")


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"  # NaN check


def print_report(results: dict[tuple[str, str, int], Cell], servers: list[str], clients: list[int],
                 notes: dict[str, list[str]], args: argparse.Namespace, load: tuple[str, str]) -> None:
    print(f"\nMachine: {machine()}")
    print(f"Load average (1/5/15 min) at start {load[0]}, at end {load[1]}: other work on the machine makes "
          "the figures noisy; the server CPU per request is steadier.")
    print(f"Each cell: {args.requests} requests at 1 client, {args.concurrent_requests} at {args.concurrency} "
          f"clients, after a warm-up of {args.warmup} (at least one per client); --workers {args.workers}; "
          "SQLite; p50/p99 by nearest rank over the successful requests.\n")
    print("| server | call | clients | p50 ms | p99 ms | req/s | server CPU ms/req |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for key in servers:
        for call in (READ, TAG, FILL, APPROVAL):
            if call in (FILL, APPROVAL) and key != "governance":  # no governed action there
                print(f"| {SERVERS[key]} | {call} | {', '.join(map(str, clients))} | n/a | n/a | n/a | n/a |")
                continue
            for n in clients:
                cell = results.get((key, call, n))
                if cell is None:
                    continue
                bad = f" ({len(cell.failures)} failed)" if cell.failures else ""
                print(f"| {SERVERS[key]} | {call} | {n} | {fmt(cell.percentile(0.5))} | {fmt(cell.percentile(0.99))} "
                      f"| {fmt(cell.rps)}{bad} | {fmt(cell.cpu_ms)} |")

    def p50(key: str, call: str, n: int = 1) -> float:
        cell = results.get((key, call, n))
        return cell.percentile(0.5) if cell else float("nan")

    def cpu(key: str, call: str, n: int = 1) -> float:
        cell = results.get((key, call, n))
        return cell.cpu_ms if cell else float("nan")

    def ratio(a: float, b: float) -> float:
        return a / b if a == a and b == b and b else float("nan")

    def verdict(value: float, ok: bool) -> str:
        return "n/a" if value != value else ("met" if ok else "not met")

    def row(label: str, a: tuple[str, str], b: tuple[str, str], target: str, ok: Callable[[float], bool] | None) -> None:
        r, c = ratio(p50(*a), p50(*b)), ratio(cpu(*a), cpu(*b))
        print(f"| {label} | {fmt(r, 2)} | {fmt(c, 2)} | {target} | {verdict(r, ok(r)) if ok else ''} |")

    print("\nTargets (issue 13), at 1 client; the same ratio on server CPU per request is the steadier one "
          "on a shared machine:\n")
    print("| ratio | p50 ratio | server CPU ratio | target | p50 verdict |")
    print("|---|---:|---:|---|---|")
    for action in (FILL, APPROVAL):
        g = p50("governance", action)
        print(f"| {action} p50 (ms) | {fmt(g)} | | < 30 ms | {verdict(g, g < 30)} |")
        row(f"{action} ÷ unauthenticated plain tag write", ("governance", action), ("plain", TAG), "≤ 1.5",
            lambda r: r <= 1.5)
        row(f"MLflow basic-auth default plain tag write ÷ {action}", ("basic", TAG), ("governance", action), "≥ 10",
            lambda r: r >= 10)
    for key in ("basic", "basic-cache", "governance"):
        governance = key == "governance"
        row(f"{SERVERS[key]} read ÷ unauthenticated read", (key, READ), ("plain", READ),
            "≤ 1.5" if governance else "(reference)", (lambda r: r <= 1.5) if governance else None)
    for key in servers:
        for note in notes.get(key, []):
            print(f"\n{SERVERS[key]}: {note}")


# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=None, help="timed requests per cell at 1 client (200)")
    parser.add_argument("--concurrent-requests", type=int, default=None,
                        help="timed requests per cell at --concurrency clients (400)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed requests per cell before it (10)")
    parser.add_argument("--workers", type=int, default=1, help="server workers, the same for every server (1)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 / 8 requests per cell, warm-up 1")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated subset of {', '.join(SERVERS)}")
    parser.add_argument("--gov-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra governance server setting (environment), e.g. to compare one of its options")
    parser.add_argument("--no-cookies", action="store_true", help="clients refuse every cookie a server sets")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (server logs, databases)")
    args = parser.parse_args()
    quick = args.quick
    args.requests = args.requests or (5 if quick else 200)
    args.concurrent_requests = args.concurrent_requests or (8 if quick else 400)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 10)
    if min(args.requests, args.concurrent_requests, args.concurrency, args.workers) < 1 or args.warmup < 0:
        parser.error("--requests, --concurrent-requests, --concurrency and --workers must be positive")
    args.server_keys = [k.strip() for k in args.servers.split(",") if k.strip()]
    unknown = [k for k in args.server_keys if k not in SERVERS]
    if unknown or not args.server_keys:
        parser.error(f"unknown server(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SERVERS)}")
    args.gov_settings = {}
    for item in args.gov_setting:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith(("MLGOV_", "MLFLOW_")):
            parser.error(f"--gov-setting {item!r}: expected MLGOV_...=VALUE or MLFLOW_...=VALUE")
        if key in ("MLGOV_ADMIN_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD"):
            parser.error("the admin password is random per run")
        args.gov_settings[key] = value
    return args


def main() -> int:
    args = parse_args()
    # A SIGTERM to the benchmark still tears the servers down (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    clients = [1] if args.concurrency == 1 else [1, args.concurrency]
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    root = Path(tempfile.mkdtemp(prefix="mlgov-bench-rest-"))
    results: dict[tuple[str, str, int], Cell] = {}
    notes: dict[str, list[str]] = {}
    failed = 0
    try:
        for key in args.server_keys:
            started = time.perf_counter()
            server = start_server(key, root, args.workers, args.gov_settings if key == "governance" else {})
            try:
                print(f"{SERVERS[key]}: up on port {server.port} in {time.perf_counter() - started:.0f} s",
                      file=sys.stderr)
                # Approvals consume one candidate each: warm-ups and both cells.
                candidates = args.requests + args.concurrent_requests + sum(
                    warmup_requests(args.warmup, n) for n in clients)
                note = prepare(server, candidates, args.concurrency)
                notes[key] = [note] if note else []
                seen_cookies: set[str] = set()
                for call in calls_for(server):
                    for n in clients:
                        total = args.requests if n == 1 else args.concurrent_requests
                        cell = run_cell(server, call, total, n, args.warmup, not args.no_cookies)
                        results[(key, call.name, n)] = cell
                        seen_cookies |= cell.cookies
                        failed += len(cell.failures)
                        print(f"  {call.name}, {n} client(s): p50 {fmt(cell.percentile(0.5))} ms, "
                              f"p99 {fmt(cell.percentile(0.99))} ms, {fmt(cell.rps)} req/s, "
                              f"{len(cell.failures)} failed", file=sys.stderr)
                        for problem in sorted(set(cell.failures))[:3]:
                            print(f"    failure: {problem}", file=sys.stderr)
                if key != "plain":
                    notes[key].append("cookies set by the server and kept by the clients: "
                                      f"{', '.join(sorted(seen_cookies)) or 'none'}"
                                      + (" (refused: --no-cookies)" if args.no_cookies else ""))
                if key == "governance" and args.gov_settings:
                    notes[key].append("extra settings: " + ", ".join(f"{k}={v}" for k, v in args.gov_settings.items()))
            except BaseException:
                print(f"--- {SERVERS[key]} log (tail) ---\n{server.log_tail()}", file=sys.stderr)
                raise
            finally:
                stop(server)
        load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print_report(results, args.server_keys, clients, notes, args, (load_start, load_end))
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if failed:
        print(f"\n{failed} request(s) failed (listed above on stderr): the figures above exclude them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:  # a server that did not start, or a setup call it refused
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
