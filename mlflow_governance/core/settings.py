"""The governance configuration file: one ``KEY=VALUE`` file for the server and the CLI.

The settings themselves (name, type, default, whether this file may set them, whether they are
secret, what they mean) are declared once in `mlflow_governance.core.environment_variables`; this
module reads the file and renders the documentation from those declarations:
``governance.env.example`` (`example`) and the README's configuration table (`readme_table`,
between the ``<!-- settings-table:start -->`` / ``<!-- settings-table:end -->`` markers).

Regenerate both after changing a declaration (tests/test_settings.py fails until you do)::

    python -m mlflow_governance.core.settings --write   # rewrite governance.env.example and README.md
    python -m mlflow_governance.core.settings --check   # exit 1 when either is out of date
    python -m mlflow_governance.core.settings           # print the example file

Values already in the environment win over the file, so a deployment can override single keys.
Loading only touches ``os.environ``; nothing is read at import time.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from mlflow_governance.core import environment_variables as ev

ENV_CONFIG = ev.MLGOV_CONFIG.name

#: The settings the file may set, in order.
FILE_SETTINGS: tuple[ev._EnvironmentVariable, ...] = tuple(v for v in ev.ALL if v.in_file)
#: Keys the file may set, with what they mean.
KEYS: dict[str, str] = {v.name: v.description for v in FILE_SETTINGS}

TABLE_START = "<!-- settings-table:start -->"
TABLE_END = "<!-- settings-table:end -->"
EXAMPLE_FILE = "governance.env.example"
README_FILE = "README.md"


class ConfigError(ValueError):
    """The configuration file is missing or malformed."""


def parse(path: Path) -> dict[str, str]:
    """Read ``KEY=VALUE`` lines (``#`` comments, optional quotes); unknown keys and malformed values
    are an error."""
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    values: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep or not key:
            raise ConfigError(f"{path}:{lineno}: expected KEY=VALUE, got {raw!r}")
        if key not in KEYS:
            if key in ev.BY_NAME:
                raise ConfigError(f"{path}:{lineno}: {key} is set in the environment only, not in the "
                                  "configuration file")
            raise ConfigError(f"{path}:{lineno}: unknown key {key!r}; known keys: {', '.join(KEYS)}")
        parts = shlex.split(value.strip()) if value.strip() else [""]
        values[key] = parts[0] if len(parts) == 1 else value.strip()
        var = ev.BY_NAME[key]
        checked = values[key] if var.secret else values[key].strip()
        if checked and (problem := var.problem(checked)):
            raise ConfigError(f"{path}:{lineno}: {problem}")
    return values


def load(path: str | Path | None = None) -> dict[str, str]:
    """Load the file named by ``path`` (or ``MLGOV_CONFIG``) into the environment; returns it."""
    path = path or ev.MLGOV_CONFIG.get()
    if not path:
        return {}
    values = parse(Path(path))
    for key, value in values.items():
        if value:  # an empty value means "use the default"
            os.environ.setdefault(key, value)
    return values


def _default_doc(var: ev._EnvironmentVariable, code: str = "") -> str:
    if var.default is not None:
        return f"{code}{var.default_text()}{code}"
    return var.default_doc or "none"


def _values(var: ev._EnvironmentVariable, code: str = "") -> str:
    """What ``var`` accepts, for the docs (``code`` quotes the words: a backtick in markdown)."""
    if isinstance(var, ev._BooleanEnvironmentVariable):
        text = f"{code}true{code} / {code}false{code}"
    elif isinstance(var, ev._ChoiceEnvironmentVariable):
        text = " / ".join(f"{code}{c}{code}" for c in var.choices)
    elif isinstance(var, ev._ListEnvironmentVariable):
        text = "comma-separated list"
    else:
        text = var.kind
    return f"{text}, secret" if var.secret else text


def _meaning(var: ev._EnvironmentVariable, code: str = "") -> str:
    fallbacks = " or ".join(f"{code}{name}{code}" for name in var.fallbacks)
    return var.description + (f"; when unset, {fallbacks} is read" if fallbacks else "")


def example() -> str:
    """The documented example file (``governance.env.example``), from the declarations."""
    lines = [
        "# mlflow-governance configuration (mlgov server --config FILE, or MLGOV_CONFIG=FILE).",
        "# Variables already in the environment win over this file; an empty value means the default.",
        "# Generated from mlflow_governance/core/environment_variables.py: python -m mlflow_governance.core.settings --write",
    ]
    for var in FILE_SETTINGS:
        value = "" if var.secret else (var.example or var.default_text())
        lines += ["", f"# {_meaning(var)}", f"# ({_values(var)}; default: {_default_doc(var)})", f"{var.name}={value}"]
    others = [var for var in ev.ALL if not var.in_file]
    if others:
        lines += ["", "# Set in the environment only, never in this file:"]
        lines += [f"#   {var.name}: {_meaning(var)}" for var in others]
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """The README's configuration table (markdown), from the declarations."""
    rows = [
        "| Setting | Values | Default | In the file | Meaning |",
        "|---|---|---|---|---|",
    ]
    for var in ev.ALL:
        cells = [f"`{var.name}`", _values(var, "`"), _default_doc(var, "`"), "yes" if var.in_file else "no",
                 _meaning(var, "`")]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def with_readme_table(readme: str) -> str:
    """``readme`` with the text between the settings-table markers replaced by `readme_table`."""
    head, start, rest = readme.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not start or not end:
        raise ConfigError(f"{README_FILE} has no {TABLE_START} ... {TABLE_END} region")
    return f"{head}{TABLE_START}\n{readme_table()}{TABLE_END}{tail}"


def readme_table_region(readme: str) -> str:
    """The text between the settings-table markers of ``readme`` (without the markers)."""
    _, start, rest = readme.partition(TABLE_START)
    region, end, _ = rest.partition(TABLE_END)
    if not start or not end:
        raise ConfigError(f"{README_FILE} has no {TABLE_START} ... {TABLE_END} region")
    return region.removeprefix("\n")


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def stale(root: Path | None = None) -> list[str]:
    """The generated files under ``root`` (the repository) that differ from the declarations."""
    root = root or _repo_root()
    out = []
    if (root / EXAMPLE_FILE).read_text(encoding="utf-8") != example():
        out.append(EXAMPLE_FILE)
    if readme_table_region((root / README_FILE).read_text(encoding="utf-8")) != readme_table():
        out.append(README_FILE)
    return out


def write(root: Path | None = None) -> list[str]:
    """Rewrite ``governance.env.example`` and the README table under ``root``; the files changed."""
    root = root or _repo_root()
    changed = stale(root)
    if EXAMPLE_FILE in changed:
        (root / EXAMPLE_FILE).write_text(example(), encoding="utf-8")
    if README_FILE in changed:
        readme = root / README_FILE
        readme.write_text(with_readme_table(readme.read_text(encoding="utf-8")), encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlflow_governance.core.settings", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"rewrite {EXAMPLE_FILE} and the {README_FILE} table")
    group.add_argument("--check", action="store_true", help="exit 1 when a generated file is out of date")
    parser.add_argument("--root", type=Path, default=None, help="the repository (default: this checkout)")
    args = parser.parse_args(argv)
    if args.write:
        changed = write(args.root)
        print(f"rewrote {', '.join(changed)}" if changed else "up to date")
        return 0
    if args.check:
        out = stale(args.root)
        if out:
            print(f"out of date: {', '.join(out)} (run python -m mlflow_governance.core.settings --write)",
                  file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(example())
    return 0


if __name__ == "__main__":
    sys.exit(main())
