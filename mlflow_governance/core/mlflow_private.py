"""MLflow's private helpers that the governed store reuses, under names that do not move.

MLflow renames its private helpers between minor releases (3.18 renamed
``mlflow.utils.validation._validate_model_alias_name`` to ``_validate_alias_name`` when prompts
got aliases too). The store must check an alias exactly as MLflow does (an alias MLflow refuses
is never ours to judge), so it calls MLflow's own check; this module finds it under the name the
installed MLflow uses, so a rename costs one line here and not an import error at start-up.

Imports only MLflow.
"""

from __future__ import annotations

from collections.abc import Callable

try:  # MLflow 3.18 and later
    from mlflow.utils.validation import _validate_alias_name as _alias_name
    from mlflow.utils.validation import _validate_alias_name_reserved as _alias_name_reserved
except ImportError:  # MLflow 3.5 to 3.17
    from mlflow.utils.validation import _validate_model_alias_name as _alias_name
    from mlflow.utils.validation import _validate_model_alias_name_reserved as _alias_name_reserved

validate_alias_name: Callable[[str], None] = _alias_name
"""MLflow's check of an alias's characters and length (``MlflowException``, INVALID_PARAMETER_VALUE)."""

validate_alias_name_reserved: Callable[[str], None] = _alias_name_reserved
"""MLflow's refusal of ``latest`` and of ``v<N>`` as alias names."""
