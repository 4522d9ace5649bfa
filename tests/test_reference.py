"""The README's reference tables name every `mlgov` command, every governance route and every sidecar
route that exists, and nothing that does not: the reference cannot fall behind the code."""

from __future__ import annotations

import re
from pathlib import Path

import click

README = Path(__file__).resolve().parents[1] / "README.md"


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"### {title}\n")
    rest = text[start + len(title) + 5:]
    end = re.search(r"^#{2,3} ", rest, flags=re.M)
    return rest[: end.start()] if end else rest


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # the header


def test_every_mlgov_command_and_subcommand_is_in_the_reference():
    from mlflow_governance.cli.main import cli

    rows = table_rows(section("`mlgov` commands"))
    documented: dict[str, set[str]] = {}
    for cells in rows:
        for name, subs in re.findall(r"`mlgov ([a-z-]+)((?: ?[A-Z_]+| [a-z-]+(?:/[a-z-]+)*)?)", cells[0]):
            words = subs.strip().split("/") if subs.strip() and subs.strip().islower() else []
            documented.setdefault(name, set()).update(words)
    assert set(documented) == set(cli.commands), (set(cli.commands) ^ set(documented))
    for name, command in cli.commands.items():
        if isinstance(command, click.Group):
            assert documented[name] == set(command.commands), (name, documented[name], set(command.commands))


def test_every_governance_route_is_in_the_reference_with_its_method():
    from mlflow_governance.server.api import ROUTES

    documented = set()
    for cells in table_rows(section("The governance REST API")):
        for path in re.findall(r"`(/[a-z/-]+)`", cells[0]):
            documented.add((path, cells[1]))
    assert documented == {(path, method) for path, method, _, _ in ROUTES}


def test_every_sidecar_route_is_in_the_reference():
    from mlflow_governance.sidecar import ServeOptions
    from mlflow_governance.sidecar.app import create_app

    app = create_app(ServeOptions(model="m", alias="production", no_auth=True), client=object(), start_threads=False)
    routes = {(method, rule.rule) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {tuple(m.split(" ", 1)) for cells in table_rows(section("The scoring sidecar's REST API"))
                  for m in re.findall(r"`((?:GET|POST) /[a-z/]+)`", cells[0])}
    assert documented == routes
