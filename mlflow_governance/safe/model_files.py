"""The one model-loading policy of mlflow-governance: what a model file may contain to be loaded.

Why. Loading a model file can run code from that file before anyone gets to look at the model:

* a pickle (``.pkl``, ``.pickle``, ``.joblib``) calls whatever its ``__reduce__`` names, for
  example ``os.system``, while it is being unpickled. There is no safe way to load one, not even
  partly, so pickle and joblib files are refused without being opened. The refusal says how to
  convert the file to skops in the environment that made it.
* a skops file builds only the types it is told to trust, but trusting "any class from NumPy,
  SciPy or scikit-learn" is not safe: ``numpy.lib._datasource.DataSource`` deletes its
  destination directory (``shutil.rmtree``) when it is garbage-collected, so a fitted estimator
  carrying a crafted ``DataSource`` attribute deletes a directory of the attacker's choice during
  the load, even if the import then fails.

What. A skops file is loaded only when every type its schema needs is in an explicit allowlist,
by the full name skops reports (defining module + qualified name, for example
``sklearn.linear_model._logistic.LogisticRegression``):

* the estimators and transformers scikit-learn lists as public (``sklearn.utils.all_estimators``);
* `SKLEARN_HELPER_TYPES`: the non-public helpers scikit-learn's own fitted estimators store (tree
  structures, histogram binning and predictors, losses and links, calibrators, neighbour trees and
  distance metrics, optimizers, CV splitters...), found by fitting each family of
  `mlflow_governance.training.pipeline.build_pipeline` and common estimators and asking skops what
  they need (``skops.io.get_untrusted_types``);
* `ALLOWED_FUNCTIONS`: the few plain functions such estimators store (``check_array``, which
  histogram gradient boosting keeps in a ``functools.partial``, and ``f_classif``);
* `VALUE_TYPES`: the NumPy and SciPy value types fitted estimators hold: arrays, dtypes and scalar
  types, random states and bit generators, sparse matrices;
* ``functools.partial``, only around a function of `PARTIAL_FUNCTIONS`. The schema is read to
  check what each partial wraps (ids resolved the way skops resolves them), so a partial of any
  other callable (``numpy.savetxt``, a class, a method, another partial) is refused.

Everything else is refused *before any object is built*: ``skops.io.get_untrusted_types`` reads
only the schema, and ``skops.io.loads`` is called only afterwards, with exactly the checked types
and on the very bytes that were checked. The ValueError names every refused type. Adding a type is
a code change here, after review: it must not run code when it is built, restored
(``__setstate__``), garbage-collected or used to predict.

Not covered: skops checks types, not values. scikit-learn's compiled trees and neighbour
structures (``sklearn.tree._tree.Tree``, ``TreePredictor``, ``KDTree``...) trust the node indices
stored in them, so a crafted file can still crash the process when the model predicts (skops'
own warning; scikit-learn/scikit-learn#34558). That is a denial of service, not code execution,
and the import scores a model in its own ``mlgov`` process only.

`skops_types_for` applies the same policy when the project saves a model it trained: what is
declared as ``skops_trusted_types`` in an MLmodel file is always an allowlisted subset.
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

PICKLE_SUFFIXES: tuple[str, ...] = (".pkl", ".pickle", ".joblib")
SKOPS_SUFFIXES: tuple[str, ...] = (".skops",)

# Non-public classes scikit-learn's own fitted estimators store (each checked to resolve to a class
# by tests/test_model_files.py). Not PyFuncDistance64: it wraps an arbitrary Python callable.
SKLEARN_HELPER_TYPES: frozenset[str] = frozenset(
    {
        # decision trees, forests, bagging, AdaBoost, GradientBoosting*
        "sklearn.tree._tree.Tree",
        # HistGradientBoosting*
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        # losses (Python and Cython) and link functions of the gradient boosting and GLM estimators
        "sklearn._loss.loss.AbsoluteError",
        "sklearn._loss.loss.ExponentialLoss",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfBinomialLossArrayAPI",
        "sklearn._loss.loss.HalfGammaLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLossArrayAPI",
        "sklearn._loss.loss.HalfPoissonLoss",
        "sklearn._loss.loss.HalfPoissonLossArrayAPI",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.loss.HalfTweedieLoss",
        "sklearn._loss.loss.HalfTweedieLossIdentity",
        "sklearn._loss.loss.HuberLoss",
        "sklearn._loss.loss.PinballLoss",
        "sklearn._loss._loss.CyAbsoluteError",
        "sklearn._loss._loss.CyExponentialLoss",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfGammaLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfPoissonLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn._loss._loss.CyHalfTweedieLoss",
        "sklearn._loss._loss.CyHalfTweedieLossIdentity",
        "sklearn._loss._loss.CyHuberLoss",
        "sklearn._loss._loss.CyPinballLoss",
        "sklearn._loss.link.HalfLogitLink",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        # CalibratedClassifierCV
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.calibration._TemperatureScaling",
        # VotingClassifier, StackingClassifier (named_estimators_)
        "sklearn.utils._bunch.Bunch",
        # KNeighbors* with the kd-tree / ball-tree algorithms and the usual metrics
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        # MLPClassifier / MLPRegressor
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        # GridSearchCV / RandomizedSearchCV
        "sklearn.metrics._scorer._PassthroughScorer",
        "sklearn.model_selection._split.KFold",
        "sklearn.model_selection._split.StratifiedKFold",
    }
)

# Functions scikit-learn's own estimators store. Each must be harmless whatever it is called with.
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(
    {
        "sklearn.utils.validation.check_array",  # HistGradientBoosting*, in a functools.partial
        "sklearn.feature_selection._univariate_selection.f_classif",  # SelectKBest & co. (default score_func)
    }
)

# What a ``functools.partial`` in a file may wrap (nothing else: not a class, method or partial).
PARTIAL_FUNCTIONS: frozenset[str] = frozenset({"sklearn.utils.validation.check_array"})
PARTIAL = "functools.partial"

# NumPy / SciPy value types fitted estimators hold, by the names skops gives them.
VALUE_TYPES: frozenset[str] = frozenset(
    {
        "numpy.ndarray",
        "numpy.ma.MaskedArray",
        "numpy.dtype",
        # scalar types (also dtype arguments such as dtype=np.float64)
        "numpy.bool",
        "numpy.bytes_",
        "numpy.clongdouble",
        "numpy.complex64",
        "numpy.complex128",
        "numpy.datetime64",
        "numpy.float16",
        "numpy.float32",
        "numpy.float64",
        "numpy.int8",
        "numpy.int16",
        "numpy.int32",
        "numpy.int64",
        "numpy.longdouble",
        "numpy.longlong",
        "numpy.object_",
        "numpy.str_",
        "numpy.timedelta64",
        "numpy.uint8",
        "numpy.uint16",
        "numpy.uint32",
        "numpy.uint64",
        "numpy.ulonglong",
        "numpy.void",
        # random_state=np.random.RandomState(...) / default_rng(...)
        "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator",
        "numpy.random.MT19937",
        "numpy.random.PCG64",
        "numpy.random.PCG64DXSM",
        "numpy.random.Philox",
        "numpy.random.SFC64",
        # sparse matrices and arrays
        "scipy.sparse._coo.coo_array",
        "scipy.sparse._coo.coo_matrix",
        "scipy.sparse._csc.csc_array",
        "scipy.sparse._csc.csc_matrix",
        "scipy.sparse._csr.csr_array",
        "scipy.sparse._csr.csr_matrix",
    }
)


def skops_name(cls: type) -> str:
    """The name skops gives ``cls``: its defining module and qualified name."""
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def sklearn_estimator_types() -> frozenset[str]:
    """The public scikit-learn estimators and transformers (``all_estimators``), by skops name."""
    from sklearn.utils import all_estimators

    return frozenset(name for _, cls in all_estimators() if (name := skops_name(cls)).startswith("sklearn."))


@functools.cache
def allowed_types() -> frozenset[str]:
    """Every type name a model file may need to be loaded (``functools.partial`` only as checked)."""
    return sklearn_estimator_types() | SKLEARN_HELPER_TYPES | ALLOWED_FUNCTIONS | VALUE_TYPES | {PARTIAL}


def check_types(types: Iterable[str], what: str) -> list[str]:
    """``types`` (sorted) when every one is allowlisted; ValueError naming those that are not.

    By name only: a file's ``functools.partial`` is checked further by `check_skops_data`.
    """
    names = sorted(set(types))
    allowed = allowed_types()
    refused = [t for t in names if t not in allowed]
    if refused:
        raise ValueError(
            f"{what} references types that are not trusted for loading: {', '.join(refused)} "
            "(only the allowlist of mlflow_governance.safe.model_files loads: scikit-learn's public estimators, "
            "their known helpers and NumPy/SciPy value types)"
        )
    return names


def pickle_refusal(path: str | Path) -> str:
    """Why a pickle/joblib file is refused, and how to convert it to skops."""
    path = Path(path)
    return (
        f"{path}: pickle and joblib files are refused, because unpickling runs code from the file "
        "before it can be checked. Convert it to skops in the environment that made it: "
        f'import joblib, skops.io; skops.io.dump(joblib.load("{path.name}"), "{path.stem}.skops") '
        "- then import the .skops file"
    )


def _schema_nodes(schema: Any) -> Iterator[dict[str, Any]]:
    """Every node (a dict with a ``__loader__``) of a skops schema, without recursion."""
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _node_name(node: Any) -> str:
    if not isinstance(node, dict):
        return repr(node)
    return f"{node.get('__module__')}.{node.get('__class__')} ({node.get('__loader__')})"


def _check_partials(schema: Any, what: str) -> None:
    """ValueError unless every ``functools.partial`` in ``schema`` wraps a `PARTIAL_FUNCTIONS` function.

    skops builds a node once per ``__id__`` and reuses it wherever that id recurs, so a partial
    wraps whatever node carries its ``func``'s id: every node with that id is checked.
    """
    nodes = list(_schema_nodes(schema))
    by_id: dict[int, list[dict[str, Any]]] = {}
    for node in nodes:
        if "__id__" in node:
            node_id = node["__id__"]
            if type(node_id) is not int:
                raise ValueError(f"{what} is not a readable skops file: malformed __id__ {node_id!r}")
            by_id.setdefault(node_id, []).append(node)

    def wraps_allowed_function(node: Any) -> bool:
        return (
            isinstance(node, dict)
            and node.get("__loader__") == "FunctionNode"
            and f"{node.get('__module__')}.{node.get('__class__')}" in PARTIAL_FUNCTIONS
        )

    for node in nodes:
        if node["__loader__"] != "PartialNode":
            continue
        content = node.get("content")
        func = content.get("func") if isinstance(content, dict) else None
        func_id = func.get("__id__") if isinstance(func, dict) else None
        wrapped = [func] + (by_id.get(func_id, []) if type(func_id) is int else [])
        bad = [n for n in wrapped if not wraps_allowed_function(n)]
        if bad:
            raise ValueError(
                f"{what} references types that are not trusted for loading: a functools.partial of "
                f"{', '.join(sorted({_node_name(n) for n in bad}))} (a partial may only wrap "
                f"{', '.join(sorted(PARTIAL_FUNCTIONS))})"
            )


def check_skops_data(data: bytes, what: str) -> list[str]:
    """The types to pass as ``trusted`` to load the skops bytes ``data``; ValueError if any is refused.

    Reads the schema only: nothing in ``data`` is built.
    """
    import skops.io as sio

    if not data.startswith(b"PK"):
        hint = (
            " It looks like a pickle, and pickles are refused: convert it with "
            "skops.io.dump(joblib.load(...), ...) in the environment that made it."
            if data[:1] == b"\x80"
            else ""
        )
        raise ValueError(f"{what} is not a readable skops file: a skops file is a zip archive.{hint}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if len(names) != len(set(names)):
                raise ValueError("the archive holds entries with the same name")
            schema = json.loads(archive.read("schema.json"))
        needed = sio.get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - zip, JSON and skops raise many types for a bad file
        raise ValueError(f"{what} is not a readable skops file: {type(exc).__name__}: {exc}") from exc
    trusted = check_types(needed, what)
    _check_partials(schema, what)
    return trusted


def loads_skops(data: bytes, what: str = "the skops data") -> object:
    """The object in the skops bytes ``data``, built only if `check_skops_data` allows it."""
    import skops.io as sio

    trusted = check_skops_data(data, what)
    return sio.loads(data, trusted=trusted)


def load_skops(path: str | Path) -> object:
    """The object in the skops file ``path``, built only if every type it needs is allowlisted.

    The file is read once: the bytes that are checked are the bytes that are loaded.
    """
    path = Path(path)
    return loads_skops(path.read_bytes(), str(path))


def load_model_file(path: str | Path) -> object:
    """The object in the model file ``path`` (skops only); ValueError for pickles and other files."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SKOPS_SUFFIXES:
        return load_skops(path)
    if suffix in PICKLE_SUFFIXES:
        raise ValueError(pickle_refusal(path))  # never opened: unpickling is what runs the code
    raise ValueError(
        f"{path}: unsupported model file type {path.suffix or '(none)'!r}; save the model with skops "
        f"({', '.join(SKOPS_SUFFIXES)})"
    )


def skops_types_for(model: object) -> list[str]:
    """The types to declare as ``skops_trusted_types`` for ``model``; ValueError if one is refused."""
    import skops.io as sio

    try:
        data = sio.dumps(model)
    except Exception as exc:  # noqa: BLE001 - skops raises many types for unsupported objects
        raise ValueError(f"{type(model).__name__} cannot be saved safely with skops: {exc}") from exc
    return check_skops_data(data, type(model).__name__)


def load_mlflow_sklearn(model_uri: str, dst_path: str | Path) -> tuple[object, dict[str, Any]]:
    """(estimator, MLmodel document) of an MLflow sklearn model at ``model_uri`` (``models:/NAME/N``).

    Downloads the model directory into ``dst_path`` and builds the estimator from its skops file
    under this module's allowlist, never with MLflow's own loader (which unpickles, or trusts
    the types the file declares for itself). A model saved with pickle or cloudpickle, or one
    without the sklearn flavor, is refused unopened.
    """
    import mlflow
    import yaml

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst_path)))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad or missing URI
        message = getattr(exc, "message", None) or str(exc)
        raise ValueError(f"cannot download {model_uri}: {message}") from exc
    mlmodel = local / "MLmodel"
    if not mlmodel.is_file():
        raise ValueError(f"{model_uri} is not an MLflow model (no MLmodel file)")
    document = yaml.safe_load(mlmodel.read_text()) or {}
    flavor = sklearn_flavor(document, model_uri)
    return load_skops(local / str(flavor.get("pickled_model", ""))), document


def sklearn_flavor(document: dict[str, Any], what: str) -> dict[str, Any]:
    """The sklearn flavor of an MLmodel ``document`` (of ``what``: a model URI, for messages) when
    this policy may load its model (scikit-learn saved with skops); ValueError otherwise, before
    any model file is opened.

    `load_mlflow_sklearn` applies it, and the sidecar to a version's MLmodel file before it serves it.
    """
    flavor = (document.get("flavors") or {}).get("sklearn")
    if not flavor:
        raise ValueError(f"{what} has no sklearn flavor: only scikit-learn models saved with skops are loaded")
    if flavor.get("serialization_format") != "skops":
        raise ValueError(
            f"{what} was saved with {flavor.get('serialization_format')!r}, which runs code when loaded: "
            "re-log it with mlflow.sklearn.log_model(..., serialization_format='skops')"
        )
    return flavor
