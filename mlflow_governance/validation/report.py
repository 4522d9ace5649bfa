"""The validation report: one self-contained HTML page and the same figures as JSON.

The page puts the verdict first, then every figure against its threshold, the confusion matrix
and ROC curve (PNG images embedded as data URIs), the fairness and drift tables and evidently's
own drift report (embedded in an ``iframe`` ``srcdoc``, so the page needs no other file; the frame is
sandboxed with scripts only, so evidently's JavaScript runs but cannot reach this page, and the
report is first made safe by `mlflow_governance.safe.html`). The
JSON is keyed by figure (``quality.accuracy``, ``drift.share_drifted``...), each with its
threshold and verdict, plus the overall verdict and the configuration digest. When the validation
ran the UAT smoke test (`mlflow_governance.validation.smoke`), the JSON has its result under
``smoke_test`` and the page a section "UAT deployment: REST smoke test" (outcome, sidecar, every
check with its HTTP status and latency).
"""

from __future__ import annotations

import base64
import io
from typing import Any

from jinja2 import Environment, select_autoescape

from mlflow_governance.monitoring.suite import Evaluation
from mlflow_governance.safe.html import safe_report_html

REPORT_SCHEMA = 1


def report_json(evaluation: Evaluation, context: dict[str, Any],
                smoke_test: dict[str, Any] | None = None) -> dict[str, Any]:
    """The machine-readable report: figures by key, verdicts, digest and what was validated
    (and the smoke test's result, when there was one)."""
    out = {
        "schema_version": REPORT_SCHEMA,
        **context,
        "verdict": evaluation.verdict,
        "config_digest": evaluation.digest,
        "figures": evaluation.figures(),
        "monitors": {r.monitor: r.to_dict() for r in evaluation.results},
    }
    if smoke_test is not None:
        out["smoke_test"] = smoke_test
    return out


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def confusion_png(matrix: list[list[int]]) -> str:
    """The confusion matrix (rows: actual on time / delayed; columns: predicted) as a PNG data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(matrix, cmap="Blues")
    labels = ["on time", "delayed"]
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    peak = max(max(row) for row in matrix) or 1
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{matrix[i][j]:,}", ha="center", va="center",
                    color="white" if matrix[i][j] > peak / 2 else "black")
    ax.set_title("Confusion matrix")
    return _png(fig)


def roc_png(fpr: list[float], tpr: list[float], auc: float | None) -> str:
    """The ROC curve as a PNG data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.plot(fpr, tpr, label=f"model (AUC {auc:.3f})" if auc is not None else "model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")
    return _png(fig)


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Validation of {{ ctx.model }} version {{ ctx.version }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 72rem; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; }
.verdict { font-size: 1.6rem; font-weight: bold; padding: .6rem 1rem; display: inline-block; }
.pass { background: #d7f5dd; } .breach { background: #f9d6d5; } .insufficient { background: #fff1c2; }
.info { background: #eef; }
img { margin-right: 1rem; }
iframe { width: 100%; height: 60rem; border: 1px solid #ccc; }
</style></head><body>
<h1>Validation of {{ ctx.model }} version {{ ctx.version }}</h1>
<p id="verdict" class="verdict {{ report.verdict }}">Verdict: {{ report.verdict | upper }}</p>
{% if report.smoke_test %}<p id="smoke-summary"><a href="#smoke-test">UAT smoke test</a>:
<strong>{{ "PASSED" if report.smoke_test.passed else "FAILED" }}</strong></p>{% endif %}
{% if ctx.override_comment %}<p id="override"><strong>Overridden by {{ ctx.validator }}:</strong>
{{ ctx.override_comment }}</p>{% endif %}
<p>Validated by <strong>{{ ctx.validator }}</strong> on {{ ctx.rows }} rows of <code>{{ ctx.data }}</code>
({{ ctx.labelled }} labelled); configuration <code>{{ report.config_digest }}</code>.</p>
<h2>Monitors</h2>
<table id="monitors"><tr><th>monitor</th><th>verdict</th><th>reason</th></tr>
{% for name, m in report.monitors.items() %}<tr><td>{{ name }}</td><td class="{{ m.verdict }}">{{ m.verdict }}</td>
<td>{{ m.reason }}</td></tr>{% endfor %}</table>
<h2>Figures</h2>
<table id="figures"><tr><th>figure</th><th>value</th><th>threshold</th><th>verdict</th></tr>
{% for key, f in report.figures.items() %}<tr data-key="{{ key }}"><td>{{ key }}</td>
<td>{{ "%.4f" | format(f.value) if f.value is not none else "undefined" }}</td>
<td>{{ f.comparison }} {{ "%.4f" | format(f.threshold) if f.threshold is not none else "" }}</td>
<td class="{{ f.verdict }}">{{ f.verdict }}</td></tr>{% endfor %}</table>
{% if report.smoke_test %}{% set smoke = report.smoke_test %}
<h2 id="smoke-test">UAT deployment: REST smoke test</h2>
<p id="smoke-verdict" class="verdict {{ "pass" if smoke.passed else "breach" }}">Smoke test:
{{ "PASSED" if smoke.passed else "FAILED" }}</p>
<p>{% if smoke.sidecar.origin == "started" %}The staging sidecar the validation started at
<code>{{ smoke.url }}</code> as {{ smoke.sidecar.identity }} (<code>{{ smoke.sidecar.command }}</code>; exit code
{{ smoke.sidecar.exit_code }} once stopped).{% else %}The running staging sidecar at
<code>{{ smoke.url }}</code>.{% endif %} {{ smoke.rows }} validation rows in each body format
({{ smoke.formats | join(", ") }}), compared with this validation's own predictions:
{{ smoke.formats_matched }} of {{ smoke.formats | length }} formats matched, largest probability difference
{{ "%.3g" | format(smoke.max_abs_diff) if smoke.max_abs_diff is not none else "not measured" }}
(tolerance {{ smoke.tolerance }}); latency p50 {{ smoke.latency_ms.p50 }} ms, max {{ smoke.latency_ms.max }} ms
over {{ smoke.latency_ms.calls }} calls.</p>
{% if smoke.failures %}<ul id="smoke-failures">{% for f in smoke.failures %}<li>{{ f }}</li>{% endfor %}</ul>{% endif %}
<table id="smoke-checks"><tr><th>check</th><th>result</th><th>HTTP</th><th>ms</th><th>detail</th></tr>
{% for c in smoke.checks %}<tr><td>{{ c.check }}</td><td class="{{ "pass" if c.passed else "breach" }}">
{{ "pass" if c.passed else "fail" }}</td><td>{{ c.http_status if c.http_status is not none else "" }}</td>
<td>{{ "%.1f" | format(c.ms) if c.ms is not none else "" }}</td><td>{{ c.detail }}</td></tr>{% endfor %}</table>
{% endif %}
<h2>Quality</h2>
{% if images.confusion %}<img id="confusion-matrix" alt="confusion matrix" src="{{ images.confusion }}">{% endif %}
{% if images.roc %}<img id="roc-curve" alt="ROC curve" src="{{ images.roc }}">{% endif %}
{% if not images.confusion and not images.roc %}<p>No quality plots: {{ report.monitors.get("quality", {}).get("reason", "quality monitor disabled") }}</p>{% endif %}
{% for name in ("fairness", "drift") %}{% if name in report.monitors %}
<h2>{{ name | capitalize }}</h2>
{% for key, rows in tables(report.monitors[name].details) %}<h3>{{ key }}</h3>
<table id="{{ name }}-{{ key }}"><tr>{% for col in rows[0].keys() %}<th>{{ col }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for value in row.values() %}<td>{{ show(value) }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endfor %}{% endif %}{% endfor %}
{% if evidently_html %}<h2>evidently's data drift report</h2>
<iframe id="evidently" title="evidently data drift report" sandbox="allow-scripts" srcdoc="{{ evidently_html }}"></iframe>{% endif %}
</body></html>
"""


def _tables(details: dict[str, Any]):
    """Every list of row dicts in ``details`` (one level of nesting), as (name, rows)."""
    out = []
    for key, value in (details or {}).items():
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            out.append((key, value))
        elif isinstance(value, dict):
            for sub, inner in value.items():
                if isinstance(inner, list) and inner and all(isinstance(r, dict) for r in inner):
                    out.append((f"{key} {sub}", inner))
    return out


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_show(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "; ".join(_show(v) for v in value)
    return "" if value is None else str(value)


def report_html(report: dict[str, Any], context: dict[str, Any], evidently_html: str | None = None) -> str:
    """The self-contained HTML page of ``report`` (from `report_json`)."""
    quality = (report.get("monitors", {}).get("quality") or {}).get("details") or {}
    images: dict[str, str] = {}
    if quality.get("confusion_matrix"):
        images["confusion"] = confusion_png(quality["confusion_matrix"])
    roc = quality.get("roc_curve") or {}
    if roc.get("fpr"):
        auc = (report.get("figures", {}).get("quality.roc_auc") or {}).get("value")
        images["roc"] = roc_png(roc["fpr"], roc["tpr"], auc)
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(_TEMPLATE)
    if evidently_html:  # autoescaped into srcdoc; safe against its data whoever rendered it
        evidently_html = safe_report_html(evidently_html)
    return template.render(report=report, ctx=context, images=images, evidently_html=evidently_html,
                           tables=_tables, show=_show)
