"""`mlgov users set-contact` and `mlgov notifications list/test` on a local registry: what each
says for every outcome (set, unchanged, cleared, had none; a listing in JSON and as lines; a test
message that fails with its one-line reason and exit 1)."""

from __future__ import annotations

import json
import os

from tests.cli_in_process import mlgov
from tests.conftest import free_port


def _as(user: str) -> dict[str, str]:
    return {**os.environ, "MLGOV_USER": user}


def test_set_contact_says_what_changed(sqlite_registry):
    admin = _as("admin")
    p = mlgov("users", "set-contact", "olivia", "--email", "olivia@example.com", env=admin)
    assert (p.returncode, p.stdout.strip()) == (0, "olivia: mail olivia@example.com"), p.stderr
    p = mlgov("users", "set-contact", "olivia", "--email", "olivia@example.com", env=admin)
    assert (p.returncode, p.stdout.strip()) == (0, "olivia: mail olivia@example.com (unchanged)"), p.stderr
    p = mlgov("users", "set-contact", "olivia", "--clear", env=admin)
    assert (p.returncode, p.stdout.strip()) == (0, "olivia: contact removed (not notified)"), p.stderr
    p = mlgov("users", "set-contact", "olivia", "--clear", env=admin)
    assert (p.returncode, p.stdout.strip()) == (0, "olivia: had no contact"), p.stderr


def test_notifications_list_and_a_failing_test_message(sqlite_registry, monkeypatch):
    admin = _as("admin")
    assert mlgov("users", "set-contact", "victor", "--email", "victor@example.com", env=admin).returncode == 0
    listed = mlgov("notifications", "list", "--json", env=admin)
    assert listed.returncode == 0, listed.stderr
    rows = {r["user"]: r for r in json.loads(listed.stdout)}
    assert rows["victor"]["contact"] == "victor@example.com" and rows["victor"]["pending"] == 0
    lines = mlgov("notifications", "list", env=admin)
    (victor,) = [line for line in lines.stdout.splitlines() if line.startswith("victor ")]
    assert "mail victor@example.com" in victor and "pending 0, failing 0, delivered 0" in victor
    assert "MLGOV_SMTP_URL is not set: not notified" in victor  # a mail contact without a mail server
    # A mail server that is not there: the test message fails, in one line, exit 1.
    port = free_port()
    env = {**admin, "MLGOV_SMTP_URL": f"smtp://127.0.0.1:{port}", "MLGOV_SMTP_FROM": "mlgov@example.com"}
    p = mlgov("notifications", "test", "victor", env=env)
    assert p.returncode == 1 and p.stdout == "", (p.returncode, p.stdout, p.stderr)
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("Error: the test notification to victor (victor@example.com) failed: "), line
