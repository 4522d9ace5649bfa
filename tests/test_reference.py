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
    ctx = click.Context(cli)
    commands = {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}
    assert set(documented) == set(commands), (set(commands) ^ set(documented))
    for name, command in commands.items():
        if isinstance(command, click.Group):
            assert documented[name] == set(command.commands), (name, documented[name], set(command.commands))


def test_the_lazy_command_table_names_what_each_module_registers():
    """`mlgov` imports a command's modules when it runs (cli/main.py's COMMANDS): each command is
    listed with every module that defines it or one of its subcommands, and nothing else is listed."""
    import importlib

    from mlflow_governance.cli import main

    everything = click.Group()
    for module in sorted({m for modules in main.COMMANDS.values() for m in modules}):
        importlib.import_module(f"mlflow_governance.cli.{module}").register(everything)

    def modules_of(command: click.Command) -> set[str]:
        found = {command.callback.__module__.removeprefix("mlflow_governance.cli.")}
        for sub in getattr(command, "commands", {}).values():
            found |= modules_of(sub)
        return found

    assert {name: modules_of(command) for name, command in everything.commands.items()} == \
        {name: set(modules) for name, modules in main.COMMANDS.items()}
    # A fresh group loads just a command's own modules to find it.
    for name, modules in main.COMMANDS.items():
        group = main.LazyGovernanceGroup()
        command = group.get_command(click.Context(group), name)
        assert command is not None and command.name == name and group._loaded == set(modules), name


def test_every_governance_route_is_in_the_reference_with_its_method():
    from mlflow_governance.server.api import ROUTES

    documented = set()
    for cells in table_rows(section("The governance REST API")):
        for path in re.findall(r"`(/[a-z/-]+)`", cells[0]):
            documented.add((path, cells[1], cells[2].strip("`")))
    assert documented == {(path, method, rule.name.partition(":")[0]) for path, method, _, rule in ROUTES}


def test_every_sidecar_route_is_in_the_reference():
    from mlflow_governance.sidecar import ServeOptions
    from mlflow_governance.sidecar.app import create_app

    app = create_app(ServeOptions(model="m", alias="production", no_auth=True), client=object(), start_threads=False)
    routes = {(method, rule.rule) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {tuple(m.split(" ", 1)) for cells in table_rows(section("The scoring sidecar's REST API"))
                  for m in re.findall(r"`((?:GET|POST) /[a-z/]+)`", cells[0])}
    assert documented == routes
