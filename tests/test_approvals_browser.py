"""A real browser (Debian's headless chromium) on the approvals page and in MLflow's UI.

One `mlflow server --app-name governance` for the module; each test drives fresh chromium
profiles signed in as the users the fixture creates through the admin REST API.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import time

import pytest
import requests

from mlflow_governance.client.rest import RestGovernance
from mlflow_governance.core import workflow as wf
from tests.conftest import unique
from tests.servers import mlflow_server

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (make test installs them as root)",
)
ADMIN_PASSWORD = "admin-pass-" + os.urandom(4).hex()
ROLES = {"olivia": wf.MODEL_OWNER, "adam": wf.MODEL_APPROVER, "erin": wf.MODEL_DATA_ENGINEER,
         "devi": wf.MODEL_DEVELOPER, "rita": wf.MODEL_APPROVER}
ACTORS = ("adam", "erin", "devi")  # granted EDIT on each model; rita only reads (or is denied)
PASSWORDS = {user: f"{user}-password-1" for user in ROLES}
WHEN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_template):
    workdir = tmp_path_factory.mktemp("browser-server")
    shutil.copy(sqlite_template, workdir / "mlflow.db")  # already migrated: the server starts sooner
    # MLflow's default permission is a floor for its grants: READ by default, EDIT where people act.
    env = {"MLGOV_ADMIN_PASSWORD": ADMIN_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
           "MLGOV_ADMIN": "admin", "MLGOV_DEFAULT_PERMISSION": "READ"}
    backend = f"sqlite:///{workdir}/mlflow.db"
    with mlflow_server(workdir, backend, "governed-" + backend, app_name="governance", env=env) as url:
        admin = RestGovernance(url, "admin", ADMIN_PASSWORD)
        for user, role in ROLES.items():
            admin.add_user(user, PASSWORDS[user])
            admin.grant(user, role)
        yield url


def api(url: str, user: str) -> RestGovernance:
    return RestGovernance(url, user, PASSWORDS[user])


def mlflow_permission(url: str, user: str, model: str, permission: str) -> None:
    """MLflow's own per-model permission for ``user`` (READ, DENY, ...), set by the admin."""
    r = requests.post(f"{url}/api/3.0/mlflow/users/permissions/grant", auth=("admin", ADMIN_PASSWORD),
                      json={"username": user, "resource_type": "registered_model", "resource_id": model,
                            "permission": permission}, timeout=30)
    assert r.status_code == 200, r.text


def initiate(url: str, model: str, use_case: str = "delay prediction", business_owner: str | None = None) -> None:
    """The owner puts ``model`` under governance (MLflow makes them its manager); the acting users get EDIT."""
    api(url, "olivia").initiate(model, use_case, "high", business_owner)
    for user in ACTORS:
        mlflow_permission(url, user, model, "EDIT")


def to_development(url: str, model: str) -> None:
    """Initiate ``model`` and walk it over REST to Approved for Development (versions enter there)."""
    initiate(url, model)
    api(url, "adam").transition(model, wf.APPROVE, None, {}, None)
    api(url, "erin").transition(model, wf.SUBMIT, None, {"training_data_asset": "file:///d.parquet",
                                                        "training_data_quality_flag": "acceptable"}, None)
    api(url, "olivia").transition(model, wf.APPROVE, None, {}, None)


def create_version(url: str, user: str, model: str) -> int:
    r = requests.post(f"{url}/api/2.0/mlflow/model-versions/create", json={"name": model, "source": "s3://bucket/m"},
                      auth=(user, PASSWORDS[user]), timeout=30)
    assert r.status_code == 200, r.text
    return int(r.json()["model_version"]["version"])


@pytest.fixture
def browser_as(tmp_path):
    """A headless chromium signed in (HTTP basic credentials on every request) as a given user."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def start(user: str, basic: bool = True):
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / ('chrome-' + user)}", "--window-size=1400,1000"):
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        drivers.append(driver)
        if not basic:  # signs in on the form, like a person
            return driver
        token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
        return driver

    yield start
    for driver in drivers:
        driver.quit()


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll ``predicate`` (a page may be reloading: element lookups that fail count as not yet)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (NoSuchElementException, StaleElementReferenceException):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def model_url(server: str, model: str) -> str:
    return f"{server}/governance/model?name={model}"


def flash_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(e.text for e in driver.find_elements(By.ID, "flash"))


def test_approver_approves_on_the_approvals_page(server, browser_as, tmp_path):
    from selenium.webdriver.common.by import By

    model = unique("page")
    initiate(server, model)
    driver = browser_as("adam")
    driver.get(server + "/governance/")
    assert driver.find_element(By.ID, "current-user").text == "adam"
    inbox = driver.find_element(By.ID, "inbox").text
    assert model in inbox and wf.CANDIDACY_REVIEW in inbox
    driver.find_element(By.LINK_TEXT, model).click()
    wait_for(lambda: driver.find_elements(By.ID, "model-stage"), what="model page")
    link = driver.find_element(By.ID, "mlflow-link").get_attribute("href")
    assert link.endswith(f"/#/models/{model}")
    driver.find_element(By.ID, "do-approve").click()
    # Post/redirect/get: the confirmation says what happened, once.
    confirmation = wait_for(lambda: flash_text(driver), what="the confirmation")
    assert confirmation == (f"Approved: model {model} is now '{wf.DATA_ACQUISITION}', "
                            f"waiting for {wf.MODEL_DATA_ENGINEER}.")
    assert driver.find_element(By.ID, "model-stage").text == wf.DATA_ACQUISITION
    assert driver.current_url == model_url(server, model)  # a GET: reloading does not post again
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver.save_screenshot(str(shots / "approvals-page.png"))
    assert (shots / "approvals-page.png").stat().st_size > 10_000
    driver.refresh()
    wait_for(lambda: driver.find_elements(By.ID, "model-stage"), what="the reloaded page")
    assert flash_text(driver) == ""
    status = api(server, "olivia").status(model, None)
    assert status["stage"] == wf.DATA_ACQUISITION and status["entered_by"] == "adam"
    history = driver.find_element(By.ID, "history").text
    assert "adam" in history and "Candidacy Review → Data Acquisition" in history
    # Nothing more waits for adam on this model, and no form is offered to him.
    assert not driver.find_elements(By.CSS_SELECTOR, "form.action")
    driver.get(server + "/governance/")
    assert model not in (driver.find_elements(By.ID, "inbox") or [driver.find_element(By.ID, "inbox-empty")])[0].text

    # The data engineer saves one field with the form's "Save fields" button...
    erin = browser_as("erin")
    erin.get(model_url(server, model))
    form = erin.find_element(By.CSS_SELECTOR, "form.action[data-action=submit]")
    form.find_element(By.NAME, "training_data_asset").send_keys("file:///data/training.parquet")
    form.find_element(By.CSS_SELECTOR, "button.save-fields").click()
    assert "Saved on model" in wait_for(lambda: flash_text(erin), what="the saved field")
    owner = api(server, "olivia")
    assert owner.status(model, None)["fields"]["training_data_asset"] == "file:///data/training.parquet"
    assert owner.status(model, None)["stage"] == wf.DATA_ACQUISITION

    # ...submits with a wrong value: refused, with the reason shown and everything typed kept...
    form = erin.find_element(By.CSS_SELECTOR, "form.action[data-action=submit]")
    assert form.find_element(By.NAME, "training_data_asset").get_attribute("value") == "file:///data/training.parquet"
    form.find_element(By.NAME, "training_data_quality_flag").send_keys("good enough")
    form.find_element(By.NAME, "comment").send_keys("profiled on the May extract")
    form.find_element(By.ID, "do-submit").click()
    refusal = wait_for(lambda: erin.find_element(By.ID, "refusal").text, what="the refusal")
    assert "training_data_quality_flag" in refusal and "must be one of" in refusal
    form = erin.find_element(By.CSS_SELECTOR, "form.action[data-action=submit]")
    assert "failed" in form.get_attribute("class") and "must be one of" in form.text
    assert form.find_element(By.NAME, "training_data_quality_flag").get_attribute("value") == "good enough"
    assert form.find_element(By.NAME, "training_data_asset").get_attribute("value") == "file:///data/training.parquet"
    assert form.find_element(By.NAME, "comment").get_attribute("value") == "profiled on the May extract"
    assert owner.status(model, None)["stage"] == wf.DATA_ACQUISITION
    erin.save_screenshot(str(shots / "refused-submit.png"))

    # ...corrects it and submits.
    flag = form.find_element(By.NAME, "training_data_quality_flag")
    flag.clear()
    flag.send_keys("acceptable")
    form.find_element(By.ID, "do-submit").click()
    confirmation = wait_for(lambda: flash_text(erin), what="the submission's confirmation")
    assert confirmation.startswith(f"Submitted: model {model} is now '{wf.DATA_ACQUISITION_COMPLETED}'")
    assert owner.status(model, None)["stage"] == wf.DATA_ACQUISITION_COMPLETED
    row = owner.audit(model, None)[-1]
    assert (row["actor"], row["action"], row["comment"]) == ("erin", "submit", "profiled on the May extract")


def test_forms_are_the_ones_the_user_may_use(server, browser_as):
    from selenium.webdriver.common.by import By

    model = unique("forms")
    to_development(server, model)
    version = create_version(server, "devi", model)

    # The owner may not submit a version for development: no such form, only the owner's own.
    owner = browser_as("olivia")
    owner.get(model_url(server, model))
    wait_for(lambda: owner.find_elements(By.ID, "model-stage"), what="model page")
    assert not owner.find_elements(By.ID, "form-new-submit")
    assert "Submit a new version" not in owner.find_element(By.TAG_NAME, "body").text
    assert [f.get_attribute("data-action") for f in owner.find_elements(By.CSS_SELECTOR, "form.action")] == [
        wf.DECOMMISSION]

    # The developer submits the new version on the page; its asset links to the version in MLflow.
    devi = browser_as("devi")
    devi.get(model_url(server, model))
    form = devi.find_element(By.ID, "form-new-submit")
    values = {"version": str(version), "model_asset": f"models:/{model}/{version}", "development_system": "laptop",
              "training_data_statistics": "runs:/0123456789abcdef0123456789abcdef/stats.json",
              "drift_detection_model": "https://drift.example.org/models/7", "model_quality": "roc_auc=0.81",
              "experiment_file": "leaderboard.csv"}
    for name, value in values.items():
        form.find_element(By.NAME, name).send_keys(value)
    devi.find_element(By.ID, "do-submit-new").click()
    confirmation = wait_for(lambda: flash_text(devi), what="the submission's confirmation")
    assert confirmation == (f"Submitted: version {version} of {model} is now '{wf.MODEL_DEVELOPMENT_COMPLETED}', "
                            f"waiting for {wf.MODEL_OWNER}.")
    asset = devi.find_element(By.CSS_SELECTOR, f"#fields-v{version} a[href$='/versions/{version}']")
    assert asset.text == f"models:/{model}/{version}"
    assert asset.get_attribute("href") == f"{server}/#/models/{model}/versions/{version}"
    unknown_run = devi.find_element(By.LINK_TEXT, values["training_data_statistics"])
    assert unknown_run.get_attribute("href") == f"{server}/#/runs/0123456789abcdef0123456789abcdef"
    assert not devi.find_elements(By.CSS_SELECTOR, f"form[data-version='{version}']")  # the owner's turn

    # The owner approves it: the confirmation names the version and its new stage.
    owner.refresh()
    owner.find_element(By.ID, f"do-approve-v{version}").click()
    confirmation = wait_for(lambda: flash_text(owner), what="the approval's confirmation")
    assert confirmation == (f"Approved: version {version} of {model} is now '{wf.APPROVED_FOR_VALIDATION}', "
                            f"waiting for {wf.MODEL_VALIDATOR}.")
    assert owner.find_element(By.ID, f"stage-v{version}").text == wf.APPROVED_FOR_VALIDATION

    # A user whom MLflow lets only read a model sees no form, though their role could act on it.
    watched = unique("readonly")
    initiate(server, watched, "read only")  # rita: MLflow's default READ only
    rita = browser_as("rita")
    rita.get(model_url(server, watched))
    wait_for(lambda: rita.find_elements(By.ID, "model-stage"), what="model page")
    assert rita.find_element(By.ID, "read-only").is_displayed()
    assert not rita.find_elements(By.CSS_SELECTOR, "form:not(#signout)")
    rita.get(server + "/governance/")
    assert watched not in (rita.find_elements(By.ID, "inbox") or [rita.find_element(By.ID, "inbox-empty")])[0].text
    assert watched in rita.find_element(By.ID, "models").text  # still listed among the readable models
    # Asked over REST, the answer is the same: her role could approve, MLflow's READ cannot.
    asked = api(server, "rita").may(watched, "approve", None, False, False, {}, None)
    assert asked["allowed"] is False and asked["kind"] == "permission" and "does not grant EDIT" in asked["message"]
    adam = browser_as("adam")
    adam.get(model_url(server, watched))
    assert adam.find_element(By.ID, "do-approve") and not adam.find_elements(By.ID, "read-only")

    # The inbox lists the user's own waiting tasks first, under their own heading, then the others'.
    adam.get(server + "/governance/")
    headings = [h.text for h in adam.find_elements(By.CSS_SELECTOR, "h1, h2")]
    assert headings.index("Waiting for you") < headings.index("Waiting for others") < headings.index(
        "All governed models")
    others = adam.find_element(By.ID, "others").text
    assert watched in adam.find_element(By.ID, "inbox").text and watched not in others
    assert model in others and wf.MODEL_VALIDATOR in others  # the validator's turn, not adam's
    rita.get(server + "/governance/")
    assert watched in rita.find_element(By.ID, "others").text  # her role's, but MLflow lets her only read it


def test_error_pages_are_html(server, browser_as):
    from selenium.webdriver.common.by import By

    denied = unique("denied")
    initiate(server, denied, "secret use case")
    mlflow_permission(server, "rita", denied, "DENY")
    ghost = unique("ghost")
    rita = browser_as("rita")

    def shows(path: str, title: str, *texts: str) -> None:
        rita.get(server + path)
        assert rita.find_element(By.ID, "error-title").text.startswith(title), path
        message = rita.find_element(By.ID, "error-message").text
        assert all(t in message for t in texts), (path, message)
        source = rita.page_source
        assert "error_code" not in source and "Traceback" not in source and "secret use case" not in source

    shows(f"/governance/model?name={ghost}", "Not found", ghost)
    rita.find_element(By.LINK_TEXT, "Back to the inbox").click()
    wait_for(lambda: rita.find_element(By.TAG_NAME, "h1").text == "Waiting for you", what="the inbox")
    shows(f"/governance/model?name={denied}", "Permission denied", "MLflow's permission")
    shows("/governance/model", "Bad request", "?name=")

    # The same answers to any client: HTML with the status; the REST API keeps MLflow's JSON errors.
    auth = ("rita", PASSWORDS["rita"])
    for path, code in ((f"/governance/model?name={ghost}", 404), (f"/governance/model?name={denied}", 403),
                       ("/governance/model", 400)):
        r = requests.get(server + path, auth=auth, timeout=30)
        assert r.status_code == code and r.headers["Content-Type"].startswith("text/html"), (path, r.text[:200])
    rest = requests.get(f"{server}/api/2.0/mlflow-governance/models/status", params={"model": ghost}, auth=auth,
                        timeout=30)
    assert rest.status_code == 404 and rest.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # A post that did not come from the page (no CSRF token) acts on nothing; a bad one is a 400 page.
    target = unique("csrf")
    initiate(server, target, "forged")
    forged = requests.post(f"{server}/governance/model/act", data={"model": target, "action": "approve"},
                           auth=("adam", PASSWORDS["adam"]), timeout=30)
    assert forged.status_code == 400 and "not accepted" in forged.text and "text/html" in forged.headers["Content-Type"]
    assert api(server, "olivia").status(target, None)["stage"] == wf.CANDIDACY_REVIEW
    bad = requests.post(f"{server}/governance/model/act", data={"model": target, "action": "fly"},
                        auth=("adam", PASSWORDS["adam"]), timeout=30)
    assert bad.status_code == 400 and "Unknown action" in bad.text and "error_code" not in bad.text


def create_run(url: str, user: str, name: str) -> tuple[str, str]:
    auth = (user, PASSWORDS[user])
    r = requests.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": unique("exp")}, auth=auth, timeout=30)
    assert r.status_code == 200, r.text
    experiment_id = r.json()["experiment_id"]
    r = requests.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id, "run_name": name},
                      auth=auth, timeout=30)
    assert r.status_code == 200, r.text
    return experiment_id, r.json()["run"]["info"]["run_id"]


def test_links_dates_and_who_acted(server, browser_as):
    from selenium.webdriver.common.by import By

    model = unique("links")
    url_value = "https://example.org/use-cases/delay?region=eu&tier=1"
    initiate(server, model, url_value, "javascript:alert(document.cookie)")
    api(server, "adam").transition(model, wf.APPROVE, None, {}, None)
    run_name = unique("training-run")
    experiment_id, run_id = create_run(server, "erin", run_name)
    api(server, "erin").set_field(model, "training_data_asset", f"runs:/{run_id}/data/train.parquet", None)
    with pytest.raises(Exception, match=wf.MODEL_DATA_ENGINEER):  # the owner tries the engineer's step
        api(server, "olivia").transition(model, wf.SUBMIT, None, {}, None)

    driver = browser_as("erin")
    driver.set_window_size(900, 1000)  # narrow enough that a wrapping column would wrap
    driver.get(model_url(server, model))
    fields = driver.find_element(By.ID, "model-fields")
    external = fields.find_element(By.LINK_TEXT, url_value)
    assert external.get_attribute("href") == url_value and external.get_attribute("target") == "_blank"
    assert "javascript:alert(document.cookie)" in fields.text
    assert not fields.find_elements(By.CSS_SELECTOR, "a[href^='javascript']")
    hrefs = [a.get_attribute("href") for a in fields.find_elements(By.TAG_NAME, "a")]
    assert hrefs == [f"{server}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/data/train.parquet", url_value]

    # Dates on one line, readable, in UTC.
    cells = driver.find_elements(By.CSS_SELECTOR, "#history td.when")
    assert cells and all(WHEN.fullmatch(c.text) for c in cells), [c.text for c in cells]
    assert all(c.value_of_css_property("white-space") == "nowrap" for c in cells)
    lines = driver.execute_script("return [...arguments[0]].map(c => c.querySelector('time').getClientRects().length)",
                                  cells)
    assert set(lines) == {1}, lines  # an inline element that wraps has one box per line

    # Who acted, in which role; a refusal names the missing role apart from the actor.
    rows = driver.find_elements(By.CSS_SELECTOR, "#history tr.refused")
    assert len(rows) == 1
    refused = rows[0]
    assert refused.find_element(By.CSS_SELECTOR, "td.actor").text == "olivia"
    assert refused.find_element(By.CSS_SELECTOR, "td.acted-as").text == ""
    outcome = refused.find_element(By.CSS_SELECTOR, "td.outcome").text
    assert outcome.startswith(f"refused: needs {wf.MODEL_DATA_ENGINEER}")
    approved = driver.find_elements(By.CSS_SELECTOR, "#history tr.allowed")
    assert [(r.find_element(By.CSS_SELECTOR, "td.actor").text, r.find_element(By.CSS_SELECTOR, "td.acted-as").text)
            for r in approved] == [("olivia", wf.MODEL_OWNER), ("adam", wf.MODEL_APPROVER),
                                   ("erin", wf.MODEL_DATA_ENGINEER)]

    # The run link opens the run in the MLflow UI.
    fields.find_element(By.PARTIAL_LINK_TEXT, f"runs:/{run_id}").click()
    wait_for(lambda: run_name in driver.find_element(By.TAG_NAME, "body").text, timeout=60, what="the run page")
    assert f"/runs/{run_id}" in driver.current_url


def add_tag_in_mlflow_ui(driver, key: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    name = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "[data-testid=tags-form-input-name]"),
                    what="the MLflow UI tag form")[0]
    name.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "[data-testid=tags-form-input-value]").send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "[data-testid=add-tag-button]").click()


def test_approver_approves_in_the_stock_mlflow_ui(server, browser_as, tmp_path):
    from selenium.webdriver.common.by import By

    model = unique("ui")
    owner = api(server, "olivia")
    initiate(server, model)
    driver = browser_as("adam")
    driver.get(f"{server}/#/models/{model}")
    # A refused action shows MLflow's error and changes nothing.
    add_tag_in_mlflow_ui(driver, "mlgov.action", "submit")
    wait_for(lambda: "not possible" in driver.page_source, what="the refusal message")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver.save_screenshot(str(shots / "mlflow-ui-refused.png"))
    assert owner.status(model, None)["stage"] == wf.CANDIDACY_REVIEW
    driver.get(f"{server}/#/models/{model}")
    driver.refresh()
    add_tag_in_mlflow_ui(driver, "mlgov.action", "approve")
    wait_for(lambda: owner.status(model, None)["stage"] == wf.DATA_ACQUISITION, what="the approval")
    driver.refresh()
    wait_for(lambda: wf.DATA_ACQUISITION in driver.find_element(By.TAG_NAME, "body").text, what="the new stage tag")
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "mlgov.stage" in body and wf.MODEL_DATA_ENGINEER in body
    driver.save_screenshot(str(shots / "mlflow-ui-approved.png"))
    assert (shots / "mlflow-ui-approved.png").stat().st_size > 10_000
    row = owner.audit(model, None)[-1]
    assert (row["actor"], row["action"], row["to_stage"]) == ("adam", "approve", wf.DATA_ACQUISITION)


def test_sign_in_once_for_the_approvals_page_and_the_mlflow_ui(server, browser_as):
    """No basic-auth header: the browser is sent to the sign-in form, and its session cookie then
    carries a governed approval on the approvals page's model and in the stock MLflow UI."""
    from selenium.webdriver.common.by import By

    model = unique("signin")
    owner = api(server, "olivia")
    initiate(server, model)
    driver = browser_as("adam", basic=False)
    driver.get(model_url(server, model))
    wait_for(lambda: driver.find_elements(By.ID, "signin"), what="the sign-in form")
    assert "/governance/signin?next=" in driver.current_url
    driver.find_element(By.ID, "username").send_keys("adam")
    driver.find_element(By.ID, "password").send_keys("not-adams-password")
    driver.find_element(By.ID, "signin-submit").click()
    wait_for(lambda: "wrong user name or password" in driver.find_element(By.ID, "signin-error").text,
             what="the refusal")
    driver.find_element(By.ID, "password").send_keys(PASSWORDS["adam"])
    driver.find_element(By.ID, "signin-submit").click()
    wait_for(lambda: driver.find_elements(By.ID, "current-user"), what="the model page, signed in")
    assert driver.find_element(By.ID, "current-user").text == "adam"
    assert driver.current_url.endswith(f"/governance/model?name={model}")
    cookie = driver.get_cookie("mlgov_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    driver.get(f"{server}/#/models/{model}")
    add_tag_in_mlflow_ui(driver, "mlgov.action", "approve")
    wait_for(lambda: owner.status(model, None)["stage"] == wf.DATA_ACQUISITION, what="the approval in the MLflow UI")
    assert owner.audit(model, None)[-1]["actor"] == "adam"
    driver.get(f"{server}/governance/")
    driver.find_element(By.CSS_SELECTOR, "#signout button").click()
    wait_for(lambda: driver.find_elements(By.ID, "signin"), what="the sign-in form after signing out")
    assert driver.get_cookie("mlgov_session") is None
