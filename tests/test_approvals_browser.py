"""A real browser (Debian's headless chromium) approving on the approvals page and in MLflow's UI."""

from __future__ import annotations

import base64
import os
import shutil
import time

import pytest

from mlflow_governance import workflow as wf
from mlflow_governance.rest_client import RestGovernance
from tests.conftest import unique
from tests.servers import mlflow_server

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (make test installs them as root)",
)
ADMIN_PASSWORD = "admin-pass-" + os.urandom(4).hex()
PASSWORDS = {"olivia": "olivia-password-1", "adam": "adam-password-1", "erin": "erin-password-1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("browser-server")
    env = {"MLGOV_ADMIN_PASSWORD": ADMIN_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
           "MLGOV_ADMIN": "admin"}
    backend = f"sqlite:///{workdir}/mlflow.db"
    with mlflow_server(workdir, backend, "governed-" + backend, app_name="governance", env=env) as url:
        admin = RestGovernance(url, "admin", ADMIN_PASSWORD)
        for user, role in (("olivia", wf.MODEL_OWNER), ("adam", wf.MODEL_APPROVER), ("erin", wf.MODEL_DATA_ENGINEER)):
            admin.add_user(user, PASSWORDS[user])
            admin.grant(user, role)
        yield url


@pytest.fixture
def browser_as(tmp_path):
    """A headless chromium signed in (HTTP basic credentials on every request) as a given user."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def start(user: str):
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / ('chrome-' + user)}", "--window-size=1400,1000"):
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        drivers.append(driver)
        token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
        return driver

    yield start
    for driver in drivers:
        driver.quit()


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_approver_approves_on_the_approvals_page(server, browser_as, tmp_path):
    from selenium.webdriver.common.by import By

    model = unique("page")
    RestGovernance(server, "olivia", PASSWORDS["olivia"]).initiate(model, "delay prediction", "high", None)
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
    wait_for(lambda: driver.find_element(By.ID, "model-stage").text == wf.DATA_ACQUISITION, what="new stage")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver.save_screenshot(str(shots / "approvals-page.png"))
    assert (shots / "approvals-page.png").stat().st_size > 10_000
    status = RestGovernance(server, "olivia", PASSWORDS["olivia"]).status(model, None)
    assert status["stage"] == wf.DATA_ACQUISITION and status["entered_by"] == "adam"
    history = driver.find_element(By.ID, "history").text
    assert "adam" in history and "Candidacy Review → Data Acquisition" in history
    # Nothing more waits for adam on this model.
    driver.get(server + "/governance/")
    assert model not in (driver.find_elements(By.ID, "inbox") or [driver.find_element(By.ID, "inbox-empty")])[0].text

    # The data engineer fills a field with the fill-field form, then submits with the other one.
    erin = browser_as("erin")
    erin.get(f"{server}/governance/model?name={model}")
    form = erin.find_element(By.CSS_SELECTOR, "form.action[data-action=submit]")
    form.find_element(By.NAME, "training_data_asset").send_keys("file:///data/training.parquet")
    form.find_element(By.CSS_SELECTOR, "button.save-fields").click()
    owner = RestGovernance(server, "olivia", PASSWORDS["olivia"])
    wait_for(lambda: owner.status(model, None)["fields"].get("training_data_asset"), what="the saved field")
    assert owner.status(model, None)["stage"] == wf.DATA_ACQUISITION
    erin.refresh()
    form = erin.find_element(By.CSS_SELECTOR, "form.action[data-action=submit]")
    form.find_element(By.NAME, "training_data_quality_flag").send_keys("acceptable")
    form.find_element(By.ID, "do-submit").click()
    wait_for(lambda: owner.status(model, None)["stage"] == wf.DATA_ACQUISITION_COMPLETED, what="the submission")
    row = owner.audit(model, None)[-1]
    assert (row["actor"], row["action"]) == ("erin", "submit")


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
    owner = RestGovernance(server, "olivia", PASSWORDS["olivia"])
    owner.initiate(model, "delay prediction", "medium", None)
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
