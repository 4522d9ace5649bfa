"""No script from data in the HTML the project writes or attaches.

evidently writes its report's data as JSON inside a ``<script>``, so a category value
``</script><img onerror=...>`` used to end that element and run as markup. Here such values go
through the acquisition profile, the drift monitor's evidently report and the validation report,
and each page opens in Debian's headless chromium, where nothing may run: the same check on
evidently's unpatched output must fire (so these tests can fail), and the patched report must
still render. `safe_report_html` itself is also tested on crafted pages.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlflow_governance.safe import html as html_safety
from mlflow_governance.safe.html import safe_report_html

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (make browser installs them as root)",
)

# Values that end evidently's data script: each leaves its own mark when it runs (no double
# quotes: JSON would write them as \", which breaks the handler before any patch does).
BREAKOUT = (
    "</script><img src=x onerror=document.title='pwned'>",
    "</script><script>window.__pwned='script';alert('pwned')</script>",
    "</SCRIPT\t><svg onload=window.__pwned_svg=1>",
)
# A value that keeps the real end tag from closing the script (HTML's "script data escaped" states).
COMMENT = ("<!--<script>", "<!--<script><img src=x onerror=document.title='pwned'>")
PAYLOADS = {"breakout": BREAKOUT, "comment": COMMENT}
END = re.compile(r"</script[\s/>]", re.IGNORECASE)


# ---- safe_report_html on crafted pages ---------------------------------------------------------

def _page(data: object, extra: str = "") -> str:
    """A page shaped like evidently's: a data script (``json.dumps`` as evidently writes it), a
    library script holding an escaped ``<\\/script>``, a comment, and the drawing script."""
    return (
        "\n<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"UTF-8\">\n"
        f"<script>\n    var metric_1 = {json.dumps(data)};\n    var additional_graphs_metric_1 = {{}};\n</script>\n"
        "</head>\n<body>\n<!-- <script>not a script</script> -->\n<div id=\"root_metric_1\"></div>\n"
        "<script>var global = globalThis</script>\n"
        "<script>var lib={a:1};var s=\"<script><\\/script>\";function draw(d,id){"
        "document.getElementById(id).textContent=JSON.stringify(d)}</script>\n"
        f"{extra}<script>\n    draw(metric_1, \"root_metric_1\");\n    </script>\n</body>\n</html>\n"
    )


def _scripts(page: str) -> list[str]:
    """The script elements' texts as an HTML parser splits them when no text holds ``<!--``."""
    out, pos = [], 0
    while (tag := re.compile(r"<!--|<script\b[^>]*>", re.IGNORECASE).search(page, pos)) is not None:
        if tag.group(0) == "<!--":
            pos = page.index("-->", tag.end()) + 3
            continue
        end = END.search(page, tag.end())
        out.append(page[tag.end():end.start()])
        pos = end.end()
    return out


def _declared(text: str) -> object:
    """The data a data script of `_page` declares (None when it is not one whole statement)."""
    declared = re.match(r"\s*var metric_1 = (.*);\n    var additional_graphs_metric_1 = \{\};\n$", text, re.DOTALL)
    try:
        return json.loads(declared.group(1)) if declared else None
    except ValueError:
        return None


@pytest.mark.parametrize("value", [
    "</script><img src=x onerror=alert(1)>",
    "</SCRIPT ><script>alert(1)</script>",
    "</script\t>", "</script/>", "<!--<script>", "<!--", "<script>", "a<b & c>d", "\\</script>", "</",
    "x\u2028y</script>",
])
def test_no_value_can_end_or_hide_the_data_script(value):
    data = {"widgets": [{"x": [value, "AA"], "title": value}], value: [1.5, None, True]}
    if END.search(json.dumps(value)) or "<!--" in value:  # as evidently writes it, it breaks the page
        raw = _scripts(_page(data))
        assert _declared(raw[0]) != data or any("<!--" in s for s in raw)
    safe = safe_report_html(_page(data))
    scripts = _scripts(safe)
    assert len(scripts) == 4  # the data, the global, the library and the drawing script, nothing more
    assert all("<!--" not in s for s in scripts)  # so HTML's escaped script states never start
    text = scripts[0]
    assert not re.search(r"</?script", text, re.IGNORECASE)
    assert _declared(text) == data  # the same data to JavaScript
    assert "<" not in text
    assert 'var s="<script><\\/script>"' in scripts[2]  # the library is left as it was
    assert "<!-- <script>not a script</script> -->" in safe  # comments between scripts too


def test_the_policy_runs_exactly_the_pages_own_scripts():
    safe = safe_report_html(_page({"x": ["</script><script>alert(1)</script>"]}))
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', safe)
    assert policy and safe.index(policy.group(0)) < safe.index('<meta charset="UTF-8">')  # first in <head>
    allowed = set(re.findall(r"'sha256-([^']+)'", policy.group(1)))
    digests = {base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in _scripts(safe)}
    assert allowed == digests and len(allowed) == 4
    assert "'unsafe-inline'" not in policy.group(1) and "object-src 'none'" in policy.group(1)
    assert safe_report_html(safe) == safe  # a safe page stays as it is (the validation report re-checks)


def test_pages_without_data_scripts_or_head():
    assert safe_report_html("<p>no script</p>").endswith("<p>no script</p>")
    assert "script-src 'none'" in safe_report_html("<p>no script</p>")
    bare = safe_report_html('<script type="application/json">{"a": "</script><b>"}</script>')
    assert '{"a": "\\u003c/script>\\u003cb>"}</script>' in bare
    unfinished = safe_report_html('<head></head><script>var d = {"a": "</scr')
    assert unfinished.endswith('var d = {"a": "</scr')  # not JSON: left alone, no crash


def test_the_validation_report_sandboxes_and_escapes_evidently():
    from mlflow_governance.validation.report import report_html

    raw = _page({"x": ['"></iframe><script>alert(1)</script>', "</script><img src=x onerror=alert(1)>"]})
    page = report_html(*_validation_report(), raw)
    frame = re.search(r"<iframe [^>]*>", page, re.DOTALL).group(0)
    assert ' sandbox="allow-scripts" ' in frame and "allow-same-origin" not in page
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame).group(1)  # the attribute holds the whole escaped page
    assert "<" not in srcdoc and "&lt;/script&gt;" in srcdoc and "&#34;" in srcdoc
    assert _scripts(html.unescape(srcdoc))[0] == _scripts(safe_report_html(raw))[0]


def _validation_report():
    report = {"verdict": "pass", "monitors": {}, "figures": {}, "config_digest": "d" * 12}
    context = {"model": "m", "version": 1, "validator": "victor", "rows": 3, "labelled": 0, "data": "f.parquet"}
    return report, context


# ---- real reports in chromium -------------------------------------------------------------------

@pytest.fixture(scope="module")
def chrome(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--user-data-dir={tmp_path_factory.mktemp('chrome')}", "--window-size=1300,1000"):
        opts.add_argument(arg)
    opts.unhandled_prompt_behavior = "ignore"  # an alert stays open for the check to see it
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


_MARKS = ("return {title: document.title, pwned: window.__pwned === undefined ? null : window.__pwned,"
          " svg: window.__pwned_svg === undefined ? null : window.__pwned_svg,"
          " root: (document.querySelector('[id^=root_]') || {innerText: ''}).innerText,"
          " charts: document.querySelectorAll('.main-svg').length}")


def _alerts(driver) -> list[str]:
    from selenium.common.exceptions import NoAlertPresentException

    seen = []
    while True:
        try:
            alert = driver.switch_to.alert
        except NoAlertPresentException:
            return seen
        seen.append(alert.text)
        alert.accept()


def _marks(driver, frame: str | None, alerts: list[str]) -> tuple[dict, dict]:
    """The markers on the page and (when ``frame`` is given) in that frame, accepting alerts."""
    from selenium.webdriver.common.by import By

    alerts += _alerts(driver)
    top = inner = driver.execute_script(_MARKS)
    if frame is not None:
        driver.switch_to.frame(driver.find_element(By.ID, frame))
        try:
            alerts += _alerts(driver)
            inner = driver.execute_script(_MARKS)
        finally:
            driver.switch_to.default_content()
    return top, inner


#: The document has finished loading and every image in it has loaded or failed: an image's error
#: event is fired in the same task that makes it ``complete``, and the load event waits for them.
_SETTLED = ("return location.href !== 'about:blank' && document.readyState === 'complete'"
            " && Array.from(document.images).every(i => i.complete)")


def _settled(driver, frame: str | None, alerts: list[str]) -> bool:
    """The page and (when ``frame`` is given) that frame are settled (`_SETTLED`), accepting alerts."""
    from selenium.webdriver.common.by import By

    alerts += _alerts(driver)
    if not driver.execute_script(_SETTLED):
        return False
    if frame is None:
        return True
    driver.switch_to.frame(driver.find_element(By.ID, frame))
    try:
        alerts += _alerts(driver)
        return bool(driver.execute_script(_SETTLED))
    finally:
        driver.switch_to.default_content()


def open_page(driver, page: Path, *, frame: str | None = None, expect_render: bool, wait: float = 20.0) -> dict:
    """Open ``page`` and report what ran: alerts, the title, the markers the payloads set (on the
    page and in its frame ``frame``), and the report's rendered text. Waits for the report to
    render (``expect_render``) or for something to run, then until the page and its frame have
    finished loading (every image loaded or failed) for anything late."""
    driver.get(page.as_uri())
    alerts: list[str] = []
    deadline = time.monotonic() + wait
    while True:
        top, inner = _marks(driver, frame, alerts)
        if (inner["root"].strip() if expect_render else ran_something({"alerts": alerts, "top": top, "inner": inner})):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    # An image's error event, a second payload: until the page and its frame have finished loading.
    deadline = time.monotonic() + wait
    while not _settled(driver, frame, alerts):
        assert time.monotonic() < deadline, f"{page} did not finish loading within {wait}s"
        time.sleep(0.1)
    top, inner = _marks(driver, frame, alerts)
    return {"alerts": alerts, "top": top, "inner": inner}


def ran_nothing(seen: dict, title: str) -> bool:
    return (not seen["alerts"] and seen["top"]["title"] == title
            and all(m["pwned"] is None and m["svg"] is None and m["title"] != "pwned"
                    for m in (seen["top"], seen["inner"])))


def ran_something(seen: dict) -> bool:
    return bool(seen["alerts"]) or any(m["pwned"] is not None or m["svg"] is not None or m["title"] == "pwned"
                                       for m in (seen["top"], seen["inner"]))


def every_breakout_ran(seen: dict) -> None:
    """The injected script (alerts: the values are in the data several times), the image's and
    the svg's event handlers all ran."""
    marks = seen["top"]
    assert seen["alerts"] and marks["pwned"] == "script" and marks["title"] == "pwned" and marks["svg"] == 1, seen


def _recording(monkeypatch, module) -> list[str]:
    """Record the unpatched HTML ``module`` hands to `safe_report_html`, which still runs."""
    raw: list[str] = []

    def record(page: str) -> str:
        raw.append(page)
        return safe_report_html(page)

    monkeypatch.setattr(module, "safe_report_html", record)
    return raw


def _values(payloads: tuple[str, ...], rows: int) -> list[str]:
    ordinary = ["AA", "UA", "DL"]
    return [(list(payloads) + ordinary)[i % (len(payloads) + len(ordinary))] for i in range(rows)]


@needs_browser
@pytest.mark.parametrize("kind", PAYLOADS)
def test_acquisition_profile_runs_no_script_from_the_source_data(kind, chrome, tmp_path, monkeypatch):
    from mlflow_governance.acquisition import profile as profiling
    from mlflow_governance.acquisition import quality

    rows = 60
    frame = pd.DataFrame({
        "FLIGHT_ID": np.arange(rows, dtype="int64"),
        "CARRIER": _values(PAYLOADS[kind], rows),
        "DISTANCE": np.linspace(100.0, 2000.0, rows),
        "DELAYED": np.arange(rows, dtype="int64") % 2,
    })
    data = tmp_path / "training.parquet"
    frame.to_parquet(data, index=False)
    import pyarrow.parquet as pq

    table = pq.read_table(data)
    profiler = profiling.Profiler(table.schema, label="DELAYED")
    profiler.update(table)
    profile = profiler.result()
    raw = _recording(monkeypatch, profiling)
    info = profiling.write_html(data, profile, quality.evaluate(profile, key="FLIGHT_ID"), tmp_path / "profile.html",
                                key="FLIGHT_ID", label="DELAYED")
    assert info["renderer"] == "evidently" and len(raw) == 1
    (tmp_path / "unpatched.html").write_text(raw[0], encoding="utf-8")

    if kind == "breakout":  # the unpatched report runs the data (the comment variant only breaks it)
        every_breakout_ran(open_page(chrome, tmp_path / "unpatched.html", expect_render=False))
    else:
        assert not open_page(chrome, tmp_path / "unpatched.html", expect_render=True, wait=3)["inner"]["root"].strip()
    seen = open_page(chrome, tmp_path / profiling.EVIDENTLY_PAGE, expect_render=True)
    assert ran_nothing(seen, ""), seen
    assert "CARRIER" in seen["inner"]["root"] and seen["inner"]["charts"] > 0  # evidently's JavaScript drew it
    summary = open_page(chrome, tmp_path / "profile.html", expect_render=False, wait=2)  # the project's own page
    assert ran_nothing(summary, "Training data profile"), summary


@pytest.fixture(scope="module")
def drift_pages():
    """evidently's drift report (unpatched and as `DriftMonitor.evidently_html` returns it) on a
    window of scored rows holding the payloads, for each payload kind."""
    from mlflow_governance.core.monitor_config import DriftConfig
    from mlflow_governance.monitoring import drift as drifting
    from mlflow_governance.monitoring.base import Reference, Window

    rng = np.random.default_rng(7)
    rows = 200
    reference = pd.DataFrame({"CARRIER": rng.choice(["AA", "UA", "DL"], rows), "DISTANCE": rng.uniform(100, 2000, rows)})
    monitor = drifting.DriftMonitor.prepare(DriftConfig(features=("CARRIER", "DISTANCE"), min_rows=10),
                                            Reference(reference, 0.9))
    pages = {}
    with pytest.MonkeyPatch.context() as mp:
        for kind, payloads in PAYLOADS.items():
            current = pd.DataFrame({"CARRIER": _values(payloads, rows), "DISTANCE": rng.uniform(100, 2000, rows)})
            raw = _recording(mp, drifting)
            safe = monitor.evidently_html(Window(current, np.zeros(rows, dtype="int64"), np.zeros(rows)))
            assert len(raw) == 1 and safe != raw[0]
            pages[kind] = raw[0], safe
    return pages


@needs_browser
@pytest.mark.parametrize("kind", PAYLOADS)
def test_drift_report_runs_no_script_from_scored_rows(kind, drift_pages, chrome, tmp_path):
    raw, safe = drift_pages[kind]
    (tmp_path / "unpatched.html").write_text(raw, encoding="utf-8")
    (tmp_path / "evidently_drift.html").write_text(safe, encoding="utf-8")
    if kind == "breakout":
        every_breakout_ran(open_page(chrome, tmp_path / "unpatched.html", expect_render=False))
    else:
        assert not open_page(chrome, tmp_path / "unpatched.html", expect_render=True, wait=3)["inner"]["root"].strip()
    seen = open_page(chrome, tmp_path / "evidently_drift.html", expect_render=True)
    assert ran_nothing(seen, ""), seen
    assert "Dataset Drift" in seen["inner"]["root"] and "CARRIER" in seen["inner"]["root"]  # evidently drew it


@needs_browser
@pytest.mark.parametrize("kind", PAYLOADS)
def test_validation_report_runs_no_script_from_the_data(kind, drift_pages, chrome, tmp_path):
    from mlflow_governance.validation.report import report_html

    raw, _ = drift_pages[kind]
    report, context = _validation_report()
    page = tmp_path / "validation_report.html"
    page.write_text(report_html(report, context, raw), encoding="utf-8")  # even given the unpatched report
    seen = open_page(chrome, page, frame="evidently", expect_render=True)
    assert ran_nothing(seen, "Validation of m version 1"), seen
    assert "Dataset Drift" in seen["inner"]["root"] and "CARRIER" in seen["inner"]["root"]


@needs_browser
def test_the_sandbox_and_the_policy_stop_what_the_data_escape_cannot(chrome, tmp_path):
    """The report's own script runs, but in the validation report it cannot reach the page; and
    markup a report script puts into the DOM runs no event handler."""
    from mlflow_governance.validation.report import report_html

    reach = ("<script>window.__ran = 1; try { parent.document.title = 'pwned' } catch (e) {}"
             " document.body.insertAdjacentHTML('beforeend',"
             " '<img src=x onerror=\"window.__pwned=1\">')</script>\n")
    from selenium.webdriver.common.by import By

    page = tmp_path / "validation_report.html"
    text = report_html(*_validation_report(), _page({"x": ["AA"]}, extra=reach))
    # Without the sandbox the report's script reaches the page; without the policy the markup runs.
    (tmp_path / "unsandboxed.html").write_text(text.replace(' sandbox="allow-scripts"', ""), encoding="utf-8")
    assert open_page(chrome, tmp_path / "unsandboxed.html", frame="evidently", expect_render=False)["top"]["title"] == "pwned"
    (tmp_path / "no_policy.html").write_text(_page({"x": ["AA"]}, extra=reach), encoding="utf-8")
    assert open_page(chrome, tmp_path / "no_policy.html", expect_render=False)["top"]["pwned"] == 1
    page.write_text(text, encoding="utf-8")
    seen = open_page(chrome, page, frame="evidently", expect_render=False, wait=3)
    assert ran_nothing(seen, "Validation of m version 1"), seen

    chrome.switch_to.frame(chrome.find_element(By.ID, "evidently"))
    try:
        assert chrome.execute_script("return [window.__ran, window.origin, document.images.length]") == [1, "null", 1]
        assert '{"x":["AA"]}' == chrome.execute_script("return document.getElementById('root_metric_1').textContent")
    finally:
        chrome.switch_to.default_content()
    assert chrome.execute_script("return document.getElementById('root_metric_1')") is None


def test_every_writer_goes_through_it():
    """The acquisition profile, the drift monitor and the validation report call it (the sidecar
    attaches the drift monitor's page)."""
    import inspect

    from mlflow_governance.acquisition import profile
    from mlflow_governance.monitoring import drift
    from mlflow_governance.validation import report

    assert "safe_report_html(" in inspect.getsource(profile.evidently_html)
    assert "safe_report_html(" in inspect.getsource(drift.DriftMonitor.evidently_html)
    assert "safe_report_html(" in inspect.getsource(report.report_html)
    assert html_safety.__doc__ and "breakout" in html_safety.__doc__
