"""The README's command blocks run as written: a README that drifts from the code fails here.

A block a user is meant to run is marked on the line before its ```bash fence::

    <!-- readme-run: NAME [NAME...] [background] [exit=N] -->

Each NAME is a sequence: its blocks run in README order in one ``bash -euo pipefail`` session,
in a fresh copy of the project (the files a clone would have), with the venv's bin first on PATH
(as after ``source .venv/bin/activate``), a fresh PostgreSQL database behind ``AIRLINES_DB``, and
every password the README reads from the environment. ``background`` starts a foreground server
command in the background and waits for its ``/health`` (the README shows ``--port 5000`` and
``127.0.0.1:5000``; every block of the sequence gets a free port instead). ``exit=N`` is a block
that must fail with exit code N and exactly one line on stderr.

Unmarked blocks (prose examples) are not run, but every ``mlgov`` command in any block must name
existing subcommands and options, and every ``mlflow run . -e E -P K=V`` an existing entry point
and parameter of the MLproject.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import yaml

from tests.conftest import PG_ADMIN_URL, free_port

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent
MARK = re.compile(r"^<!--\s*readme-run:(?P<spec>[^>]*?)-->\s*$")
SEQUENCES = ("local", "server")  # every one must exist: deleting the marks must not pass silently
# The passwords the README reads from the environment (never a literal secret in the README).
PASSWORD_VARS = ("MLGOV_ADMIN_PASSWORD", "OLIVIA_PASSWORD", "ADAM_PASSWORD", "ERIN_PASSWORD", "DEVI_PASSWORD",
                 "VICTOR_PASSWORD", "DORA_PASSWORD", "MONA_PASSWORD")
README_PORT = "5000"
SEQUENCE_TIMEOUT = 900


@dataclass(frozen=True)
class Block:
    line: int  # 1-based README line of the first command line
    text: str
    names: tuple[str, ...] = ()
    background: bool = False
    exit_code: int | None = None

    @property
    def marked(self) -> bool:
        return bool(self.names)


def readme_blocks(text: str) -> list[Block]:
    """Every ```bash block of ``text``, with its readme-run mark (if any)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        mark = MARK.match(lines[i].strip())
        if mark and (i + 1 >= len(lines) or lines[i + 1].strip() != "```bash"):
            raise AssertionError(f"README.md:{i + 1}: a readme-run mark must be on the line before a ```bash fence")
        if lines[i].strip() == "```bash":
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
            assert end is not None, f"README.md:{i + 1}: unclosed ```bash fence"
            names, background, exit_code = (), False, None
            previous = MARK.match(lines[i - 1].strip()) if i else None
            if previous:
                names, background, exit_code = _parse_spec(previous.group("spec"), i)
            blocks.append(Block(i + 2, "\n".join(lines[i + 1:end]) + "\n", names, background, exit_code))
            i = end
        i += 1
    return blocks


def _parse_spec(spec: str, line: int) -> tuple[tuple[str, ...], bool, int | None]:
    names: list[str] = []
    background, exit_code = False, None
    for word in spec.split():
        if word == "background":
            background = True
        elif word.startswith("exit="):
            exit_code = int(word.removeprefix("exit="))
        elif re.fullmatch(r"[a-z][a-z0-9_-]*", word):
            names.append(word)
        else:
            raise AssertionError(f"README.md:{line}: readme-run: unknown word {word!r}")
    assert names, f"README.md:{line}: readme-run names no sequence"
    assert not (background and exit_code is not None), f"README.md:{line}: background and exit= exclude each other"
    return tuple(names), background, exit_code


def sequence(name: str, blocks: list[Block] | None = None) -> list[Block]:
    return [b for b in (blocks or readme_blocks(README.read_text(encoding="utf-8"))) if name in b.names]


# --- fast checks: the marks, and the commands of every block against the CLI and the MLproject ---


def test_marks_are_well_formed():
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    marked = [b for b in blocks if b.marked]
    assert {n for b in marked for n in b.names} == set(SEQUENCES), "a readme-run sequence is new or missing"
    for name in SEQUENCES:
        assert sequence(name, blocks), name
    for block in marked:
        if block.background:
            assert f"--port {README_PORT}" in block.text, f"README.md:{block.line}: a server block shows --port 5000"
        assert "MLGOV_USER" not in block.text or "server" not in block.names or block.exit_code == 3, (
            f"README.md:{block.line}: against a server, people act with their credentials, not MLGOV_USER")


def _commands(block: str) -> list[list[str]]:
    """The simple commands of a block (continuations joined, comments dropped, split at ; | && ||)."""
    out: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lex.whitespace_split = True
        lex.commenters = "#"
        try:
            tokens = list(lex)
        except ValueError:
            continue
        current: list[str] = []
        for token in tokens + [";"]:
            if token and set(token) <= set(";&|"):
                if current:
                    out.append(current)
                current = []
            else:
                current.append(token)
    # Leading VAR=value assignments are the environment of the command, not its words.
    return [words for cmd in out if (words := [w for n, w in enumerate(cmd) if not _is_assignment(cmd[: n + 1])])]


def _is_assignment(prefix: list[str]) -> bool:
    return all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w, re.S) for w in prefix)


def _check_mlgov(words: list[str], where: str) -> None:
    from mlflow_governance.cli.main import cli

    command: click.Command = cli
    args = words[1:]
    path = ["mlgov"]
    with click.Context(cli) as ctx:
        while isinstance(command, click.Group) and args and not args[0].startswith("-"):
            sub = command.get_command(ctx, args[0])
            assert sub is not None, f"{where}: `{' '.join(path)} {args[0]}` is not a command"
            path.append(args[0])
            command, args = sub, args[1:]
    known = {"--help"} | {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    for word in args:
        word = word.strip("[]")
        if word.startswith("--"):
            option = word.split("=", 1)[0]
            assert option in known, f"{where}: `{' '.join(path)}` has no option {option} (has: {sorted(known)})"


def _check_mlflow_run(words: list[str], where: str) -> None:
    project = yaml.safe_load((REPO / "MLproject").read_text(encoding="utf-8"))["entry_points"]
    entry = words[words.index("-e") + 1] if "-e" in words else "main"
    assert entry in project, f"{where}: the MLproject has no entry point {entry!r}"
    params = project[entry].get("parameters") or {}
    for n, word in enumerate(words):
        if word == "-P":
            key = words[n + 1].strip("[]").split("=", 1)[0]
            assert key in params, f"{where}: entry point {entry} has no parameter {key!r} (has: {sorted(params)})"
    assert "--env-manager" in words, f"{where}: `mlflow run` needs --env-manager local here (no conda)"
    required = [k for k, v in params.items() if isinstance(v, dict) and "default" not in v]
    given = {words[n + 1].split("=", 1)[0] for n, w in enumerate(words) if w == "-P"}
    assert not set(required) - given, f"{where}: entry point {entry} needs {sorted(set(required) - given)}"


def test_every_command_names_real_options():
    """Marked or not, every mlgov and `mlflow run` command in the README exists as written."""
    checked = 0
    for block in readme_blocks(README.read_text(encoding="utf-8")):
        for words in _commands(block.text):
            where = f"README.md:{block.line}: {' '.join(words)[:80]}"
            tool = Path(words[0]).name
            if tool == "mlgov":
                _check_mlgov(words, where)
                checked += 1
            elif tool == "mlflow" and words[1:2] == ["run"]:
                _check_mlflow_run(words, where)
                checked += 1
    assert checked >= 20, checked


def test_command_parser_sees_assignments_and_continuations():
    words = _commands('A=1 B="x y" mlgov transition m submit \\\n    --set a=b  # --not-an-option\nls | wc -l\n')
    assert words == [["mlgov", "transition", "m", "submit", "--set", "a=b"], ["ls"], ["wc", "-l"]]


def _run_script(blocks: list[Block], tmp_path: Path) -> tuple[int, str, dict[int, int]]:
    script, line_map = session_script(blocks, free_port(), tmp_path)
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    return p.returncode, p.stdout + p.stderr, line_map


def test_session_names_the_failing_readme_line(tmp_path):
    refused = "sh -c 'echo \"Error: refused\" >&2; exit 3'\n"
    rc, out, line_map = _run_script([Block(10, "echo one\n", ("x",)), Block(20, refused, ("x",), exit_code=3),
                                     Block(30, "true\nfalse\necho never\n", ("x",))], tmp_path)
    assert rc != 0 and "one" in out and "never" not in out, out
    failed = re.findall(r"readme-run: failed at script line (\d+)", out)
    assert [line_map[int(n)] for n in failed] == [31], out
    # an exit= block that succeeds, or says more than one line, fails the session
    rc, out, _ = _run_script([Block(20, "true\n", ("x",), exit_code=3)], tmp_path)
    assert rc != 0 and "expected exit 3, got 0" in out, out
    rc, out, _ = _run_script([Block(20, "echo noise >&2\n" + refused, ("x",), exit_code=3)], tmp_path)
    assert rc != 0 and "expected one Error: line" in out, out


# --- the sequences, run for real ---


def project_copy(dest: Path) -> Path:
    """The files a clone of the working tree would have (tracked and new, not ignored ones)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


_WAIT_HEALTH = textwrap.dedent("""\
    readme_wait_health() {  # URL PID LOG: until the server answers /health, or it died, or 120 s passed
      python - "$@" <<'PY'
    import os, sys, time, urllib.request
    url, pid, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            sys.exit(0)
        except Exception:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.3)
    sys.stderr.write("readme-run: no answer at " + url + "; server log:\\n" + open(log).read()[-4000:])
    sys.exit(1)
    PY
    }
    """)


def session_script(blocks: list[Block], port: int, logs: Path) -> tuple[str, dict[int, int]]:
    """The bash script of one sequence and a map from its line numbers to README lines."""
    on_error = "trap 'echo \"readme-run: failed at script line $LINENO (exit $?)\" >&2' ERR"
    parts: list[str] = ["set -euo pipefail", on_error, _WAIT_HEALTH]
    line_map: dict[int, int] = {}

    def add(chunk: str, readme_line: int | None = None) -> None:
        start = sum(p.count("\n") + 1 for p in parts) + 1
        if readme_line is not None:
            for k in range(chunk.count("\n") + 1):
                line_map[start + k] = readme_line + k
        parts.append(chunk.rstrip("\n"))

    for block in blocks:
        text = block.text.replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{port}").replace(
            f"--port {README_PORT}", f"--port {port}")
        add(f"echo \"=== README.md:{block.line} (at ${{SECONDS}} s)\" >&2")
        if block.background:
            log = logs / f"server-{block.line}.log"
            add("(")
            add(text, block.line)
            add(f") > {shlex.quote(str(log))} 2>&1 &")
            add(f"readme_wait_health http://127.0.0.1:{port}/health $! {shlex.quote(str(log))}")
        elif block.exit_code is not None:
            err = logs / f"stderr-{block.line}.txt"
            # Not `( ... ) || rc=$?`: bash ignores set -e inside a subshell on the left of ||.
            add("trap - ERR; set +e")
            add("(")
            add("set -e")
            add(text, block.line)
            add(f") 2> {shlex.quote(str(err))}")
            add(f"readme_rc=$?; set -e; {on_error}")
            add(f"cat {shlex.quote(str(err))} >&2")
            add(f'if [ "$readme_rc" != {block.exit_code} ]; then echo "README.md:{block.line}: expected exit '
                f'{block.exit_code}, got $readme_rc" >&2; exit 1; fi')
            add(f'if [ "$(grep -c . {shlex.quote(str(err))})" != 1 ] || ! head -1 {shlex.quote(str(err))} | '
                f'grep -q "^Error: "; then echo "README.md:{block.line}: expected one Error: line on stderr" >&2; '
                "exit 1; fi")
        else:
            add(text, block.line)
    return "\n".join(parts) + "\n", line_map


def session_env(airlines_db: str, passwords: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    env.pop("VIRTUAL_ENV", None)
    env.update(passwords)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRLINES_DB": airlines_db,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # MLflow's job runner triples a server's start-up
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _drop_database(url: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, which kill(0) still finds, do not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _stop(proc: subprocess.Popen) -> None:
    """End the session's process group: the bash session and any server it started."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(proc.pid):
            proc.poll()
            time.sleep(0.2)
        if not _group_alive(proc.pid):
            break
    proc.poll()


@dataclass
class SessionRun:
    """One sequence's bash session: started by `readme_runs`, checked by its test."""

    name: str
    blocks: list[Block]
    proc: subprocess.Popen
    output: Path
    line_map: dict[int, int]
    airlines_db: str
    started: float
    rc: int | None = None
    seconds: float = 0.0


def _start(name: str, tmp: Path) -> SessionRun:
    blocks = sequence(name)
    work = project_copy(tmp / "project")
    logs = tmp / "logs"
    logs.mkdir()
    # A database no other run uses: the README's seed command creates it (--create-database).
    airlines_db = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/mlgov_readme_{name}_{uuid.uuid4().hex[:8]}"
    passwords = {var: f"{var.split('_')[0].lower()}-{secrets.token_hex(8)}" for var in PASSWORD_VARS}
    script, line_map = session_script(blocks, free_port(), logs)
    (logs / "session.sh").write_text(script)
    output = logs / "session.out"
    with open(output, "w") as out:
        proc = subprocess.Popen(["bash", str(logs / "session.sh")], cwd=work, env=session_env(airlines_db, passwords),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return SessionRun(name, blocks, proc, output, line_map, airlines_db, time.monotonic())


@pytest.fixture(scope="module")
def readme_runs(request, tmp_path_factory) -> dict[str, SessionRun]:
    """Every selected sequence, run at the same time (each in its own copy, database and session)."""
    wanted = [name for name in SEQUENCES
              if any(item.name == f"test_readme_sequence_runs[{name}]" for item in request.session.items)]
    runs: dict[str, SessionRun] = {}
    try:
        for name in wanted:
            runs[name] = _start(name, tmp_path_factory.mktemp(f"readme-{name}"))
        deadline = time.monotonic() + SEQUENCE_TIMEOUT
        for run in runs.values():
            try:
                run.rc = run.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                run.rc = None
            run.seconds = time.monotonic() - run.started
        yield runs
    finally:
        for run in runs.values():
            _stop(run.proc)
            _drop_database(run.airlines_db)


@pytest.mark.parametrize("name", SEQUENCES)
def test_readme_sequence_runs(name, readme_runs):
    run = readme_runs[name]
    output = run.output.read_text(errors="replace")
    print(f"README sequence {name}: {len(run.blocks)} blocks in {run.seconds:.0f} s")
    if run.rc != 0:
        failed = re.findall(r"readme-run: failed at script line (\d+)", output)
        where = f" (README.md:{run.line_map.get(int(failed[-1]), '?')})" if failed else ""
        pytest.fail(f"README sequence {name!r} {'timed out' if run.rc is None else f'exited {run.rc}'}{where}:\n"
                    f"{output[-6000:]}", pytrace=False)
