"""The model-loading policy (`mlflow_governance.safe.model_files`), against the security review's findings.

1. A skops file whose fitted model carries a ``numpy.lib._datasource.DataSource`` deleted a
   victim directory when imported (DataSource.__del__ calls shutil.rmtree): it is now refused
   before any object is built, and the directory survives.
2. A pickle/joblib file whose ``__reduce__`` calls ``os.system`` ran before the import refused it:
   pickles are now refused unopened, with the skops conversion hint.

Each attack file is also shown to be a real attack (a "control": loaded the old way, it does the
damage), so the refusals are proven against working exploits, not against broken files.
"""

from __future__ import annotations

import ast
import functools
import gc
import importlib
import inspect
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from numpy.lib._datasource import DataSource
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlflow_governance.safe import model_files as mf
from mlflow_governance.training import importer
from mlflow_governance.training.importer import load_outside_model
from mlflow_governance.training.pipeline import build_pipeline, trusted_types
from tests.test_training_refusals import assert_nothing_written

FAMILIES = ("logistic_regression", "random_forest", "hist_gradient_boosting")
CONVERSION_HINT = "skops.io.dump(joblib.load("


# --- helpers -------------------------------------------------------------------------------------


def tiny_frame(rows: int = 240, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """The nine raw feature columns (with missing values) and a 0/1 label."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "MONTH": rng.integers(1, 3, rows),
            "DAY": rng.integers(1, 29, rows),
            "DAY_OF_WEEK": rng.integers(1, 8, rows),
            "SCHEDULED_HOUR": rng.integers(5, 23, rows),
            "DEPARTURE_DELAY": rng.normal(5, 20, rows),
            "DISTANCE": rng.uniform(100, 2000, rows),
            "CARRIER": rng.choice(["AA", "B6", "DL", "UA", "WN"], rows),
            "ORIGIN_AIRPORT": rng.choice(["JFK", "LGA", "EWR"], rows),
            "DESTINATION_AIRPORT": rng.choice(["ATL", "ORD", "LAX", "SFO"], rows),
        }
    )
    y = (X["DEPARTURE_DELAY"] > 15).astype("int64")
    X.loc[X.index[:8], "DEPARTURE_DELAY"] = np.nan
    X.loc[X.index[8:12], "CARRIER"] = None
    return X, y


SMALL = {"logistic_regression": {}, "random_forest": {"n_estimators": 10}, "hist_gradient_boosting": {"max_iter": 10}}


def fitted(family: str) -> Pipeline:
    """A ``build_pipeline`` model of ``family`` (kept small), fitted on `tiny_frame`."""
    X, y = tiny_frame()
    return build_pipeline(family, SMALL[family], seed=0).fit(X, y)


@functools.cache
def fitted_bytes(family: str) -> bytes:
    """`fitted` saved with skops, made once per session."""
    return sio.dumps(fitted(family))


def nodes(schema: Any):
    """Every skops node (dict with a ``__loader__``) in ``schema``."""
    if isinstance(schema, dict):
        if "__loader__" in schema:
            yield schema
        for value in schema.values():
            yield from nodes(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from nodes(value)


def edit_schema(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """``data`` with its schema.json edited in place by ``edit``: what an attacker does by hand."""
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))
    edit(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info, json.dumps(schema) if info.filename == "schema.json" else source.read(info))
    return out.getvalue()


def json_node(value: Any, node_id: int) -> dict[str, Any]:
    return {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
        "__id__": node_id,
    }


def add_attribute(schema: dict[str, Any], name: str, node: dict[str, Any]) -> None:
    """Give the schema's top-level estimator one more attribute, ``name`` = ``node``."""
    state = schema["content"]
    state["content"][name] = node
    state["key_types"]["content"].append(
        {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode", "__id__": 31}
    )


def datasource_file(victim: Path, path: Path, module: str = "numpy.lib._datasource") -> Path:
    """The review's file: a fitted pipeline whose extra attribute is a DataSource rooted at ``victim``.

    skops saves the DataSource (as ``numpy.lib.npyio.DataSource``, its public name); the attacker
    then edits the schema so it names ``module``.DataSource and marks the destination temporary
    (``_istmpdest``, under a fresh id), which makes ``__del__`` remove it.
    """
    model = fitted("logistic_regression")
    model.source = DataSource(destpath=str(victim))  # _istmpdest False: harmless while in our hands
    data = sio.dumps(model)
    del model

    def edit(schema: dict[str, Any]) -> None:
        (node,) = [n for n in nodes(schema) if n.get("__class__") == "DataSource"]
        node["__module__"] = module
        node["content"]["content"]["_istmpdest"] = json_node(True, 1)

    path.write_bytes(edit_schema(data, edit))
    return path


def victim_dir(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("do not delete")
    return victim


def assert_intact(victim: Path) -> None:
    gc.collect()
    assert victim.is_dir() and (victim / "precious.txt").read_text() == "do not delete"


class RunsACommand:
    """Unpickling this runs ``touch <marker>`` (the review's pickle)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pickle_file(path: Path, marker: Path) -> Path:
    if path.suffix == ".joblib":
        joblib.dump(RunsACommand(marker), path)
    else:
        path.write_bytes(pickle.dumps(RunsACommand(marker)))
    return path


def mlgov(*args: str) -> subprocess.CompletedProcess:
    """The installed ``mlgov`` console script, as a real process with this test's environment."""
    exe = Path(sys.executable).parent / "mlgov"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, env={**os.environ})


# --- finding 1: DataSource in a skops file ---------------------------------------------------------


def test_control_the_datasource_file_deletes_the_victim_when_its_types_are_trusted(tmp_path):
    """What the old policy did (it trusted any NumPy class): the load deletes the directory."""
    victim = victim_dir(tmp_path)
    data = datasource_file(victim, tmp_path / "evil.skops").read_bytes()
    assert "numpy.lib._datasource.DataSource" in sio.get_untrusted_types(data=data)
    loaded = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    del loaded
    gc.collect()
    assert not victim.exists()


@pytest.mark.parametrize("module", ["numpy.lib._datasource", "numpy.lib.npyio"])
def test_datasource_skops_file_is_refused_and_the_victim_survives(tmp_path, module):
    victim = victim_dir(tmp_path)
    path = datasource_file(victim, tmp_path / "evil.skops", module)
    for load in (load_outside_model, mf.load_skops, mf.load_model_file):
        with pytest.raises(ValueError, match=rf"not trusted for loading: {module}\.DataSource") as refused:
            load(path)
        del refused
        assert_intact(victim)


def test_import_model_cli_refuses_the_datasource_file(approved_model, training_parquet, tmp_path, training_cli):
    victim = victim_dir(tmp_path)
    path = datasource_file(victim, tmp_path / "outside.skops")
    result = training_cli(
        "import-model", "--model-file", str(path), "--data", str(training_parquet), "--model", approved_model
    )
    assert result.exit_code == 2, result.output
    assert "numpy.lib._datasource.DataSource" in result.output, result.output
    del result
    assert_intact(victim)
    assert_nothing_written(approved_model)


# --- finding 2: pickles that run code --------------------------------------------------------------


def test_control_the_pickle_runs_its_command_when_unpickled(tmp_path):
    marker = tmp_path / "MARKER"
    joblib.load(pickle_file(tmp_path / "evil.joblib", marker))
    assert marker.exists()


@pytest.mark.parametrize("name", ["evil.pkl", "evil.pickle", "evil.joblib", "EVIL.PKL"])
def test_pickles_are_refused_unopened_with_the_skops_conversion_hint(tmp_path, name):
    marker = tmp_path / "MARKER"
    path = pickle_file(tmp_path / name, marker)
    for load in (load_outside_model, mf.load_model_file):
        with pytest.raises(ValueError, match="pickle and joblib files are refused") as refused:
            load(path)
        assert CONVERSION_HINT in str(refused.value) and "then import the .skops file" in str(refused.value)
        assert not marker.exists()


@pytest.mark.parametrize("name", ["outside.pkl", "outside.joblib"])
def test_import_model_cli_refuses_pickles(approved_model, training_parquet, tmp_path, training_cli, name):
    marker = tmp_path / "MARKER"
    path = pickle_file(tmp_path / name, marker)
    result = training_cli(
        "import-model", "--model-file", str(path), "--data", str(training_parquet), "--model", approved_model
    )
    assert result.exit_code == 2, result.output
    assert "pickle and joblib files are refused" in result.output and CONVERSION_HINT in result.output
    assert not marker.exists()
    assert_nothing_written(approved_model)


def test_installed_mlgov_refuses_a_pickle_and_a_datasource_file(
    approved_model, training_parquet, tmp_path, monkeypatch
):
    marker, victim = tmp_path / "MARKER", victim_dir(tmp_path)
    monkeypatch.setenv("MLGOV_USER", "devi")
    pkl, skops_file = pickle_file(tmp_path / "outside.pkl", marker), datasource_file(victim, tmp_path / "outside.skops")
    for path, message in ((pkl, CONVERSION_HINT), (skops_file, "numpy.lib._datasource.DataSource")):
        done = mlgov(
            "import-model", "--model-file", str(path), "--data", str(training_parquet), "--model", approved_model
        )
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert message in done.stdout + done.stderr, (done.stdout, done.stderr)
    assert not marker.exists()
    assert_intact(victim)
    assert_nothing_written(approved_model)


def test_the_loading_modules_never_import_pickle_or_joblib():
    for module in (mf, importer):
        tree = ast.parse(inspect.getsource(module))
        imported = {alias.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & {"pickle", "joblib", "cloudpickle", "dill", "_pickle"}, (module.__name__, imported)


# --- what does load --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_every_pipeline_family_passes_the_allowlist_and_round_trips(tmp_path, family):
    model = fitted(family)
    declared = trusted_types(model)
    assert declared == mf.skops_types_for(model) and set(declared) <= mf.allowed_types()
    path = tmp_path / f"{family}.skops"
    sio.dump(model, path)
    loaded = mf.load_skops(path)
    X, _ = tiny_frame(60, seed=1)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(load_outside_model(path).predict_proba(X), model.predict_proba(X))


def _common_classifiers() -> dict[str, Any]:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, VotingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    return {
        "gradient_boosting": GradientBoostingClassifier(n_estimators=5),
        "extra_trees": ExtraTreesClassifier(n_estimators=5),
        "knn": KNeighborsClassifier(),
        "mlp": MLPClassifier(hidden_layer_sizes=(4,), max_iter=50),
        "svc": SVC(probability=True),
        "calibrated": CalibratedClassifierCV(LogisticRegression()),
        "voting": VotingClassifier([("lr", LogisticRegression()), ("nb", GaussianNB())], voting="soft"),
        "grid_search": GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=3),
    }


@pytest.mark.parametrize("name", sorted(_common_classifiers()))
def test_common_classifiers_pass_the_allowlist_and_round_trip(name):
    import warnings

    from sklearn.datasets import make_classification

    X, y = make_classification(200, 5, n_informative=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _common_classifiers()[name].fit(X, y)
    assert set(mf.skops_types_for(model)) <= mf.allowed_types()
    np.testing.assert_array_equal(mf.loads_skops(sio.dumps(model)).predict_proba(X), model.predict_proba(X))


def test_the_allowlist_is_explicit_names_that_resolve():
    """Full names only (no packages), each resolving the way skops resolves it, to a class or function."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.utils import all_estimators

    allowed = mf.allowed_types()
    assert mf.skops_name(LogisticRegression) == "sklearn.linear_model._logistic.LogisticRegression" in allowed
    assert {mf.skops_name(cls) for _, cls in all_estimators()} <= allowed
    for name in sorted(allowed):
        module, _, attr = name.rpartition(".")
        obj = getattr(importlib.import_module(module), attr)
        assert isinstance(obj, type) or callable(obj), name
    assert (
        not {
            "numpy",
            "scipy",
            "sklearn",
            "numpy.lib._datasource.DataSource",
            "numpy.lib.npyio.DataSource",
            "numpy.memmap",
            "sklearn.metrics._dist_metrics.PyFuncDistance64",
        }
        & allowed
    )
    assert mf.PARTIAL_FUNCTIONS <= mf.ALLOWED_FUNCTIONS


# --- what does not load ----------------------------------------------------------------------------


def test_a_partial_of_numpy_savetxt_is_refused(tmp_path):
    """The review's own example: numpy.savetxt bound into the model would write files when it scores."""
    from sklearn.linear_model import LogisticRegression

    written = tmp_path / "written-by-the-model.txt"
    writer = functools.partial(np.savetxt, str(written))
    model = Pipeline([("f", FunctionTransformer(writer)), ("clf", LogisticRegression())])
    with pytest.raises(ValueError, match=r"not trusted for loading: .*numpy\.savetxt"):
        mf.skops_types_for(model)
    path = tmp_path / "m.skops"
    sio.dump(model, path)
    for load in (mf.load_skops, load_outside_model):
        with pytest.raises(ValueError, match=r"not trusted for loading: .*numpy\.savetxt"):
            load(path)
    assert not written.exists()


@pytest.mark.parametrize("func", [os.system, np.savetxt, np.load, eval, __import__("shutil").rmtree])
def test_a_function_transformer_with_a_foreign_function_is_refused(tmp_path, func):
    from sklearn.linear_model import LogisticRegression

    model = Pipeline([("f", FunctionTransformer(func=func)), ("clf", LogisticRegression())])
    name = f"{func.__module__}.{func.__name__}"
    with pytest.raises(ValueError, match=rf"not trusted for loading: .*{name}"):
        mf.skops_types_for(model)
    with pytest.raises(ValueError, match=rf"not trusted for loading: .*{name}"):
        mf.loads_skops(sio.dumps(model), "m.skops")


def _partials(schema: dict[str, Any]) -> list[dict[str, Any]]:
    found = [n for n in nodes(schema) if n["__loader__"] == "PartialNode"]
    assert found and all(n["content"]["func"]["__class__"] == "check_array" for n in found)
    return found


@pytest.mark.parametrize(
    "replacement",
    [
        # an allowlisted *type*: called as a function (partial(numpy.ndarray, ...))
        {"__class__": "ndarray", "__module__": "numpy", "__loader__": "TypeNode", "__id__": 11},
        # an allowlisted function that is not allowed inside a partial
        {
            "__class__": "f_classif",
            "__module__": "sklearn.feature_selection._univariate_selection",
            "__loader__": "FunctionNode",
            "__id__": 12,
        },
        # a partial of a partial
        "nested",
        # looks like check_array, but its id is that of another node: skops would wrap that node
        "aliased",
    ],
)
def test_a_partial_may_only_wrap_allowlisted_functions(replacement):
    data = fitted_bytes("hist_gradient_boosting")

    def edit(schema: dict[str, Any]) -> None:
        for partial in _partials(schema):
            replace(schema, partial["content"])

    def replace(schema: dict[str, Any], content: dict[str, Any]) -> None:
        if replacement == "nested":
            content["func"] = {
                "__class__": "partial",
                "__module__": "functools",
                "__loader__": "PartialNode",
                "content": json.loads(json.dumps(content)),
                "__id__": 13,
            }
        elif replacement == "aliased":
            dtype_node = next(n for n in nodes(schema) if n["__loader__"] == "TypeNode" and n["__class__"] == "float64")
            content["func"]["__id__"] = dtype_node["__id__"]
        else:
            content["func"] = replacement

    crafted = edit_schema(data, edit)
    assert set(sio.get_untrusted_types(data=crafted)) <= mf.allowed_types()  # every *name* is allowlisted
    with pytest.raises(ValueError, match="not trusted for loading: a functools.partial of"):
        mf.loads_skops(crafted, "crafted.skops")


@pytest.mark.parametrize(
    "module, name, loader",
    [
        ("builtins", "eval", "FunctionNode"),
        ("os", "system", "ConstructorFromReduceNode"),
        ("posix", "system", "ConstructorFromReduceNode"),
        ("subprocess", "Popen", "ObjectNode"),
        ("shutil", "rmtree", "TypeNode"),
        ("numpy.lib._datasource", "DataSource", "ObjectNode"),
        ("sklearn.linear_model._logistic", "LogisticRegression.fit", "FunctionNode"),
    ],
)
def test_a_dangerous_name_in_a_schema_is_refused_by_name(tmp_path, module, name, loader):
    marker = tmp_path / "MARKER"
    node: dict[str, Any] = {"__class__": name, "__module__": module, "__loader__": loader, "__id__": 21}
    if loader == "ConstructorFromReduceNode":  # builds gettype(module, name)(*content): os.system("touch ...")
        node["content"] = {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [json_node(f"touch {marker}", 22)],
            "__id__": 23,
        }
    if loader == "ObjectNode":
        node["content"] = {
            "__class__": "dict",
            "__module__": "builtins",
            "__loader__": "DictNode",
            "content": {},
            "key_types": {
                "__class__": "list",
                "__module__": "builtins",
                "__loader__": "ListNode",
                "content": [],
                "__id__": 24,
            },
            "__id__": 25,
        }
    data = edit_schema(fitted_bytes("logistic_regression"), lambda s: add_attribute(s, "evil", node))
    assert f"{module}.{name}" in sio.get_untrusted_types(data=data)
    with pytest.raises(ValueError, match=rf"not trusted for loading: .*{module}\.{name}"):
        mf.loads_skops(data, "crafted.skops")
    with pytest.raises(ValueError, match=rf"{module}\.{name}"):
        mf.check_types(sio.get_untrusted_types(data=data), "crafted.skops")
    assert not marker.exists()
    if module == "os":  # control: trusted, the same file runs the command while it loads
        sio.loads(data, trusted=sio.get_untrusted_types(data=data))
        assert marker.exists()


def test_check_types_names_every_refused_type_and_returns_the_allowed_sorted():
    assert mf.check_types(["sklearn.tree._tree.Tree", "numpy.dtype", "numpy.dtype"], "m") == [
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
    ]
    with pytest.raises(ValueError) as refused:
        mf.check_types(["numpy.dtype", "os.system", "builtins.eval"], "m.skops")
    message = str(refused.value)
    assert message.startswith("m.skops references types that are not trusted for loading: builtins.eval, os.system")
    assert "numpy.dtype" not in message.split("(")[0]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("m.txt", b"x", "unsupported model file type '.txt'"),
        ("m", b"x", "unsupported model file type '(none)'"),
        ("m.skops", b"not a zip", "not a readable skops file: a skops file is a zip archive"),
        ("m.skops", pickle.dumps({"a": 1}), "It looks like a pickle, and pickles are refused"),
        ("m.skops", b"PK\x03\x04 broken", "not a readable skops file"),
    ],
)
def test_other_files_are_refused(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mf.load_model_file(path)


def test_a_skops_file_with_two_schemas_is_refused():
    data = fitted_bytes("logistic_regression")
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target, pytest.warns(UserWarning, match="Duplicate name"):
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr("schema.json", source.read("schema.json"))
    with pytest.raises(ValueError, match="entries with the same name"):
        mf.loads_skops(out.getvalue(), "two-schemas.skops")
