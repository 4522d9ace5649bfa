"""Settings are declared once (mlflow_governance/core/environment_variables.py); everything else follows.

The checked-in example file and the README table are generated from the declarations, every
``MLGOV_`` name the code or docs mention is declared, malformed values are refused naming the
setting, defaults are the documented ones, and the configuration file parser is strict.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from mlflow_governance.core import config, settings
from mlflow_governance.core import environment_variables as ev
from mlflow_governance.server import guard, permissions

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "mlflow_governance"
NAME = re.compile(r"\bMLGOV_[A-Z0-9]+(?:_[A-Z0-9]+)*")

MALFORMED = [
    ("MLGOV_SEPARATION_OF_DUTIES", "maybe", "true or false"),
    ("MLGOV_USER_LIST", "some", "one of all, admins"),
    ("MLGOV_DEFAULT_PERMISSION", "WRITE", "one of READ, USE, EDIT, MANAGE, NO_PERMISSIONS"),
    ("MLGOV_DEFAULT_PERMISSION", "DENY", "one of READ, USE, EDIT, MANAGE, NO_PERMISSIONS"),
]


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch):
    """Every declared variable (and its fallbacks) unset; monkeypatch restores whatever code sets."""
    for var in ev.ALL:
        for name in (var.name, *var.fallbacks):
            monkeypatch.delenv(name, raising=False)
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_CONFIG_PATH",
                 "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"):
        monkeypatch.delenv(name, raising=False)


# -- generated files ---------------------------------------------------------------------------


def test_example_file_is_generated_from_the_declarations():
    assert (REPO / "governance.env.example").read_text(encoding="utf-8") == settings.example(), (
        "run: python -m mlflow_governance.core.settings --write"
    )


def test_readme_table_is_generated_from_the_declarations():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.count(settings.TABLE_START) == 1 and readme.count(settings.TABLE_END) == 1
    assert readme.index(settings.TABLE_START) > readme.index("### Configuration")
    assert settings.readme_table_region(readme) == settings.readme_table(), (
        "run: python -m mlflow_governance.core.settings --write"
    )
    assert settings.main(["--check"]) == 0


def test_the_table_and_the_example_name_every_setting():
    table = settings.readme_table()
    example = settings.example()
    for var in ev.ALL:
        assert f"| `{var.name}` |" in table
        if var.in_file:
            assert re.search(rf"^{var.name}=", example, re.M), var.name
        else:
            assert f"#   {var.name}: " in example and not re.search(rf"^{var.name}=", example, re.M)


def test_write_repairs_stale_copies(tmp_path):
    (tmp_path / "governance.env.example").write_text("stale\n", encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    stale = readme.replace(settings.readme_table(), "| old | table |\n")
    (tmp_path / "README.md").write_text(stale, encoding="utf-8")
    assert settings.main(["--check", "--root", str(tmp_path)]) == 1
    assert settings.write(tmp_path) == ["governance.env.example", "README.md"]
    assert settings.stale(tmp_path) == []
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == readme  # nothing outside the markers moved
    assert settings.write(tmp_path) == []
    (tmp_path / "README.md").write_text("no markers\n", encoding="utf-8")
    with pytest.raises(settings.ConfigError, match="settings-table"):
        settings.write(tmp_path)


# -- every name is declared ----------------------------------------------------------------------


def test_every_mlgov_name_in_the_code_is_declared():
    used = {}
    for path in PACKAGE.rglob("*.py"):
        for name in NAME.findall(path.read_text(encoding="utf-8")):
            used.setdefault(name, path.relative_to(REPO))
    assert used, "the regex found nothing"
    undeclared = {name: str(where) for name, where in used.items() if name not in ev.BY_NAME}
    assert not undeclared, f"declare these in mlflow_governance/core/environment_variables.py: {undeclared}"


def test_every_mlgov_name_in_the_docs_is_declared():
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    undeclared = {name for doc in docs for name in NAME.findall(doc.read_text(encoding="utf-8"))} - set(ev.BY_NAME)
    assert not undeclared


def test_the_readers_go_through_the_declarations():
    """No governance setting is read with os.environ and a literal name in the modules that own them."""
    direct = re.compile(r"""os\.environ(?:\.get|\.setdefault|\.pop)?\s*[\[(]\s*["']((?:MLGOV|MLFLOW)_\w+)""")
    files = ["core/config.py", "core/settings.py", "core/identity.py", "client/governance.py", "client/rest.py",
             "server/app.py", "server/guard.py", "server/permissions.py", "cli/server.py"]
    found = {f: direct.findall((PACKAGE / f).read_text(encoding="utf-8")) for f in files}
    assert not {f: names for f, names in found.items() if names}


def test_declarations_are_well_formed():
    assert len(ev.BY_NAME) == len(ev.ALL)
    for var in ev.ALL:
        assert var.description and "\n" not in var.description
        assert var.default is not None or var.default_doc, f"{var.name}: say what unset means"
        if var.secret:
            assert var.default is None and not var.example
    with pytest.raises(ValueError, match="_BooleanEnvironmentVariable"):
        ev._EnvironmentVariable("MLGOV_X", bool, True, description="x")
    with pytest.raises(ValueError, match="not one of"):
        ev._ChoiceEnvironmentVariable("MLGOV_X", ("a", "b"), "c", description="x")


def test_default_permission_choices_are_mlflow_permissions():
    from mlflow.server.auth.permissions import ALL_PERMISSIONS, DENY

    # DENY is a per-resource veto, not a floor for every object: not offered as the default.
    assert set(ev.MLGOV_DEFAULT_PERMISSION.choices) == set(ALL_PERMISSIONS) - {DENY.name}


# -- malformed values are refused ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "allowed"), MALFORMED)
def test_malformed_values_are_refused_naming_the_setting(monkeypatch, name, value, allowed):
    monkeypatch.setenv(name, value)
    with pytest.raises(MlflowException) as exc:
        ev.BY_NAME[name].get()
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"
    assert exc.value.message.startswith(f"{name} must be {allowed}")
    assert exc.value.message.endswith(f", not {value!r}")
    with pytest.raises(MlflowException, match=name):
        ev.check_all()


@pytest.mark.parametrize(("name", "value", "allowed"), MALFORMED)
def test_the_server_refuses_to_start_on_a_malformed_value(monkeypatch, tmp_path, name, value, allowed):
    monkeypatch.setenv("MLGOV_ADMIN_PASSWORD", "long-enough-password")
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", "s3cret")
    monkeypatch.setenv("MLFLOW_REGISTRY_STORE_URI", f"governed-sqlite:///{tmp_path}/m.db")
    from mlflow_governance.server import app

    assert app.check_settings() == "long-enough-password"
    monkeypatch.setenv(name, value)
    with pytest.raises(MlflowException, match=f"{name} must be {re.escape(allowed)}") as exc:
        app.check_settings()
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"


def test_the_public_readers_refuse_malformed_values(monkeypatch):
    monkeypatch.setenv("MLGOV_SEPARATION_OF_DUTIES", "maybe")
    with pytest.raises(MlflowException, match="MLGOV_SEPARATION_OF_DUTIES must be true or false"):
        config.separation_of_duties()
    monkeypatch.setenv("MLGOV_USER_LIST", "some")
    with pytest.raises(MlflowException, match="MLGOV_USER_LIST must be one of all, admins, not 'some'"):
        permissions.check_user_list_setting()


def test_check_all_reports_every_problem_at_once(monkeypatch):
    for name, value, _ in MALFORMED[:3]:
        monkeypatch.setenv(name, value)
    assert [p.split(" ")[0] for p in ev.problems()] == [
        "MLGOV_DEFAULT_PERMISSION", "MLGOV_SEPARATION_OF_DUTIES", "MLGOV_USER_LIST"]
    with pytest.raises(MlflowException) as exc:
        ev.check_all()
    assert all(name in exc.value.message for name, _, _ in MALFORMED[:3])


def test_the_mlgov_server_command_refuses_a_malformed_value(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from mlflow_governance.cli.main import cli

    monkeypatch.setenv("MLGOV_ADMIN_PASSWORD", "long-enough-password")
    monkeypatch.setenv("MLFLOW_REGISTRY_STORE_URI", f"governed-sqlite:///{tmp_path}/m.db")
    monkeypatch.setenv("MLGOV_USER_LIST", "some")
    result = CliRunner().invoke(cli, ["server", "--dry-run"])
    assert result.exit_code == 2 and "MLGOV_USER_LIST must be one of all, admins, not 'some'" in result.output


# -- accepted values and defaults ---------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("1", True), ("yes", True), ("on", True), (" TRUE ", True),
    ("false", False), ("0", False), ("no", False), ("off", False), ("Off", False), ("", True),
])
def test_separation_of_duties_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("MLGOV_SEPARATION_OF_DUTIES", value)
    assert config.separation_of_duties() is expected


def test_choices_are_case_insensitive_and_canonical(monkeypatch):
    monkeypatch.setenv("MLGOV_USER_LIST", " Admins ")
    assert permissions.check_user_list_setting() == "admins"
    monkeypatch.setenv("MLGOV_DEFAULT_PERMISSION", "no_permissions")
    assert ev.MLGOV_DEFAULT_PERMISSION.get() == "NO_PERMISSIONS"


def test_defaults_are_the_documented_ones(monkeypatch):
    assert config.admin_user() == "admin"
    assert config.separation_of_duties() is True
    assert config.production_alias() == "production"
    assert config.audit_key() is None
    assert config.local_user() is None
    assert permissions.check_user_list_setting() == "all"
    assert guard.allowed_origins() is None
    assert ev.MLGOV_DEFAULT_PERMISSION.get() == "EDIT"
    table = settings.readme_table()
    for var in ev.ALL:
        assert var.get() == var.default
        if var.default is not None:  # the README says so, and the example file sets it
            assert f"| `{var.name}` | {settings._values(var, '`')} | `{var.default_text()}` |" in table
            assert f"\n{var.name}={var.example or var.default_text()}\n" in settings.example()
    # Empty or blank means the default too.
    for var in ev.ALL:
        monkeypatch.setenv(var.name, "" if var.secret else "  ")
    assert all(var.get() == var.default for var in ev.ALL)


def test_values_are_read_when_asked_for(monkeypatch):
    monkeypatch.setenv("MLGOV_ADMIN", " root ")
    monkeypatch.setenv("MLGOV_PRODUCTION_ALIAS", "champion")
    monkeypatch.setenv("MLGOV_USER", "devi")
    assert (config.admin_user(), config.production_alias(), config.local_user()) == ("root", "champion", "devi")
    assert config.is_production_alias("CHAMPION") and not config.is_production_alias("production")
    monkeypatch.setenv("MLGOV_ALLOWED_ORIGINS", " https://A.example/ , ,http://b:8080")
    assert guard.allowed_origins() == ("https://a.example", "http://b:8080")
    monkeypatch.setenv("MLGOV_ALLOWED_ORIGINS", " , ")
    assert guard.allowed_origins() == ()  # set, but lists nothing: every foreign origin is refused


def test_secrets_are_used_exactly_and_the_password_falls_back_to_mlflows(monkeypatch):
    monkeypatch.setenv("MLGOV_AUDIT_KEY", " key with blanks ")
    assert config.audit_key() == " key with blanks "
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "mlflow-own-password")
    assert ev.MLGOV_ADMIN_PASSWORD.get() == "mlflow-own-password"
    monkeypatch.setenv("MLGOV_ADMIN_PASSWORD", "governance-password")
    assert ev.MLGOV_ADMIN_PASSWORD.get() == "governance-password"


def test_basic_auth_gets_the_default_permission(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("MLGOV_ADMIN_PASSWORD", "long-enough-password")
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", "s3cret")
    monkeypatch.setenv("MLFLOW_REGISTRY_STORE_URI", f"governed-sqlite:///{tmp_path}/m.db")
    monkeypatch.setenv("MLGOV_USER", "someone")
    from mlflow_governance.server import app

    app.configure_basic_auth()
    ini = Path(os.environ["MLFLOW_AUTH_CONFIG_PATH"]).read_text(encoding="utf-8")
    assert "default_permission = EDIT\n" in ini and f"database_uri = sqlite:///{tmp_path}/m.db\n" in ini
    assert os.environ["MLFLOW_AUTH_ADMIN_USERNAME"] == "admin"
    assert "MLGOV_USER" not in os.environ  # a server never acts as a local user
    monkeypatch.setenv("MLGOV_DEFAULT_PERMISSION", "read")
    app.configure_basic_auth()
    assert "default_permission = READ\n" in Path(os.environ["MLFLOW_AUTH_CONFIG_PATH"]).read_text()


def test_mlgov_server_passes_the_settings_on(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from mlflow_governance.cli.main import cli

    monkeypatch.delenv("MLFLOW_FLASK_SERVER_SECRET_KEY", raising=False)
    config_file = tmp_path / "governance.env"
    config_file.write_text(
        f"MLFLOW_REGISTRY_STORE_URI=governed-sqlite:///{tmp_path}/m.db\nMLGOV_ADMIN_PASSWORD=long-enough-password\n"
        "MLGOV_ALLOWED_ORIGINS=https://ui.example, https://b.example\nMLFLOW_ARTIFACTS_DESTINATION=/srv/art\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["server", "--config", str(config_file), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"--backend-store-uri sqlite:///{tmp_path}/m.db" in result.output
    assert "--artifacts-destination /srv/art" in result.output
    assert os.environ["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"] == "https://ui.example,https://b.example"
    assert len(os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == 64


# -- the configuration file ------------------------------------------------------------------------------


def test_the_example_file_parses_to_the_file_keys(tmp_path):
    path = tmp_path / "governance.env"
    shutil.copy(REPO / "governance.env.example", path)
    assert list(settings.parse(path)) == list(settings.KEYS) == [v.name for v in ev.ALL if v.in_file]


def test_the_parser_refuses_unknown_keys_and_environment_only_keys(tmp_path):
    path = tmp_path / "governance.env"
    path.write_text("MLGOV_ADMIN=root\nTYPO_KEY=1\n", encoding="utf-8")
    with pytest.raises(settings.ConfigError, match=r":2: unknown key 'TYPO_KEY'; known keys: MLFLOW_BACKEND"):
        settings.parse(path)
    path.write_text("MLGOV_USER=devi\n", encoding="utf-8")
    with pytest.raises(settings.ConfigError, match=r":1: MLGOV_USER is set in the environment only"):
        settings.parse(path)
    path.write_text("just words\n", encoding="utf-8")
    with pytest.raises(settings.ConfigError, match="expected KEY=VALUE"):
        settings.parse(path)
    with pytest.raises(settings.ConfigError, match="does not exist"):
        settings.parse(tmp_path / "missing.env")


@pytest.mark.parametrize(("name", "value", "allowed"), MALFORMED)
def test_the_parser_refuses_malformed_values_with_their_line(tmp_path, name, value, allowed):
    path = tmp_path / "governance.env"
    path.write_text(f"# comment\n{name}={value}\n", encoding="utf-8")
    with pytest.raises(settings.ConfigError, match=rf"governance.env:2: {name} must be {re.escape(allowed)}"):
        settings.parse(path)


def test_load_keeps_the_environment_first_and_empty_means_default(monkeypatch, tmp_path):
    path = tmp_path / "governance.env"
    path.write_text("export MLGOV_ADMIN='root'\nMLGOV_PRODUCTION_ALIAS=champion\nMLGOV_AUDIT_KEY=\n"
                    'MLGOV_SEPARATION_OF_DUTIES="off"\n', encoding="utf-8")
    monkeypatch.setenv("MLGOV_PRODUCTION_ALIAS", "live")
    monkeypatch.setenv("MLGOV_CONFIG", str(path))
    assert settings.load() == {"MLGOV_ADMIN": "root", "MLGOV_PRODUCTION_ALIAS": "champion",
                               "MLGOV_AUDIT_KEY": "", "MLGOV_SEPARATION_OF_DUTIES": "off"}
    assert config.admin_user() == "root"
    assert config.production_alias() == "live"  # the environment wins over the file
    assert config.audit_key() is None
    assert config.separation_of_duties() is False
    monkeypatch.delenv("MLGOV_CONFIG")
    assert settings.load() == {}
