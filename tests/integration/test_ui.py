"""The web dashboard (/ui) in a real headless browser (Debian's chromium + chromedriver, driven by Selenium)
against real farms: real ONNX Runtime builds on CPU, a build followed live and cancelled from its page, the
engine matrix and a build submitted for an empty cell; then a farm with API keys where a read-only key signs
in, sees no action, and a POST is refused anyway.

TRTFARM_UI_SCREENSHOTS=1 writes the pages' screenshots to docs/screenshots/ (the README shows them)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import REPO, RunningFarm, batch_profile, wait_for
from tests.models import convnet

CHROMIUM = os.environ.get("TRTFARM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TRTFARM_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = REPO / "docs" / "screenshots"
UNSERVED = "onnxruntime==9.9.9@x86_64-avx2"
SLOW = {"iterations": 1_000_000, "max_seconds": 3600}  # a benchmark that runs until cancelled


@pytest.fixture
def browser() -> Iterator:
    """Headless chromium. Missing pieces fail the test (scripts/setup installs them): never a silent skip."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: run scripts/setup (pip install -e '.[test]')", pytrace=False)
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            pytest.fail(f"{path} is missing: run scripts/setup as root (apt-get install chromium chromium-driver)",
                        pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,860", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def css(driver, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def until(condition: Callable[[], object], timeout: float = 30, what: str = "the page") -> object:
    """wait_for, where an element that went stale (the page reloaded under it: the live pages do; chromium then
    says "stale element" or "does not belong to the document") is a "not yet"."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    def settled() -> object:
        try:
            return condition()
        except StaleElementReferenceException:
            return None
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return None
            raise

    return wait_for(settled, timeout=timeout, what=what)


def screenshot(driver, name: str) -> None:
    if os.environ.get("TRTFARM_UI_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def test_pages_live_log_cancel_and_matrix_in_open_mode(farm_factory, browser, ort_runtime: str, peer_ort,
                                                       tmp_path: Path) -> None:
    farm: RunningFarm = farm_factory(workers=1, lease_s=4)
    peer_python, peer_version = peer_ort
    farm.add_worker(TRTFARM_TOOLCHAINS=f"onnxruntime={peer_python}")
    sdk, ui = farm.client(), f"{farm.url}/ui"
    model = sdk.upload(convnet(tmp_path / "ui.onnx", channels=4, layers=1, seed=71))
    done = sdk.submit(model.id, ort_runtime, batch_profile(), wait=False)
    slow = sdk.submit(model.id, ort_runtime, {**batch_profile(opt=3), "bench": SLOW}, wait=False)
    assert farm.wait_build(done.id, timeout=120)["status"] == "succeeded"

    # the build page follows the slow build live: its log gains lines while it runs
    browser.get(f"{ui}/builds/{slow.id}")
    first = css(browser, "#log")[0].text
    until(lambda: len(css(browser, "#log")[0].text.splitlines()) > len(first.splitlines())
          and css(browser, "#log-mode")[0].text, timeout=90, what="the log to gain lines")
    until(lambda: css(browser, "#status")[0].text == "running", what="the running status")
    farm.wait_build(slow.id, lambda b: b["progress"] == "benchmarking", timeout=60)
    until(lambda: "benchmark" in css(browser, "#log")[0].text, timeout=30, what="the benchmark's log line")
    # the events stream where the API has it (HEAD of a GET-only route: 405), else polling the log
    has_events = httpx.head(f"{farm.url}/v1/builds/{slow.id}/events").status_code != 404
    assert css(browser, "#log-mode")[0].text == ("(live)" if has_events else "(polling every 2 s)")
    screenshot(browser, "build-detail")
    browser.execute_cdp_cmd("Network.enable", {})  # no events route reachable: the page falls back to polling
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/events"]})
    browser.get(f"{ui}/builds/{slow.id}")
    until(lambda: css(browser, "#log-mode")[0].text == "(polling every 2 s)", what="the polling fallback")
    until(lambda: "benchmark" in css(browser, "#log")[0].text, what="the polled log")
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})

    browser.get(f"{ui}/fleet")
    workers = {r.get_attribute("data-name"): r for r in css(browser, "#workers tr.worker")}
    assert len(workers) == 2
    building = [r for r in workers.values() if r.get_attribute("data-state") == "building"]
    assert len(building) == 1 and slow.id[:12] in building[0].text and "onnxruntime" in building[0].text
    assert any(peer_version in r.text and r.get_attribute("data-state") == "idle" for r in workers.values())
    queues = [r.get_attribute("data-name") for r in css(browser, "#queues tr.queue")]
    assert len(queues) == 2 and all(q.startswith("build.onnxruntime-") for q in queues)
    screenshot(browser, "fleet")
    # the page follows the fleet's event stream: draining the idle worker shows without a reload by hand
    until(lambda: css(browser, "#workers")[0].get_attribute("data-live") == "true", what="the fleet stream")
    idle = next(name for name, r in workers.items() if r.get_attribute("data-state") == "idle")
    sdk.drain(idle)
    until(lambda: any(r.get_attribute("data-name") == idle and r.get_attribute("data-state") in ("draining", "drained")
                      for r in css(browser, "#workers tr.worker")), timeout=30, what="the drained worker's row")
    sdk.resume(idle)

    browser.get(f"{ui}/builds")
    rows = {r.get_attribute("data-id"): r.get_attribute("data-status") for r in css(browser, "#builds tr.build")}
    assert rows == {done.id: "succeeded", slow.id: "running"}
    screenshot(browser, "builds")
    browser.get(f"{ui}/builds?status=succeeded")
    assert [r.get_attribute("data-id") for r in css(browser, "#builds tr.build")] == [done.id]
    browser.get(f"{ui}/builds?target=onnxruntime%3D%3D0.0.0%40none")
    assert css(browser, "#builds tr.build") == []

    browser.get(f"{ui}/builds/{done.id}")
    assert css(browser, "#status")[0].text == "succeeded" and not css(browser, "#cancel")
    assert css(browser, "#timings tr th") and "✓" in css(browser, "#validation")[0].text
    assert '"profiles"' in css(browser, "#spec")[0].get_attribute("textContent")

    _check_matrix(browser, farm, ui, model.id, ort_runtime, peer_version, done.id, slow.id)

    # cancel the slow build from its page; the API says cancelled
    browser.get(f"{ui}/builds/{slow.id}")
    css(browser, "#cancel")[0].click()
    assert farm.wait_build(slow.id, timeout=30)["status"] == "cancelled"
    until(lambda: css(browser, "#status") and css(browser, "#status")[0].text == "cancelled", timeout=30,
          what="the page to show the build cancelled")
    assert not css(browser, "#cancel")


def _check_matrix(browser, farm: RunningFarm, ui: str, model_id: str, ort_runtime: str, peer_version: str,
                  done_id: str, slow_id: str) -> None:
    browser.get(f"{ui}/models")
    assert [r.get_attribute("data-id") for r in css(browser, "#models tr.model")] == [model_id]
    browser.get(f"{ui}/models/{model_id}")
    columns = [th.text for th in css(browser, "#matrix th.target")]
    peer_target = next(c for c in columns if f"=={peer_version}@" in c)
    assert ort_runtime in columns and len(columns) == 2
    labels = [th.text for th in css(browser, "#matrix th.variant-label code")]
    assert len(labels) == 2 and all('"profiles"' in label for label in labels)  # the rows differ by profile
    cells = css(browser, "#matrix tr.variant td.cell")
    filled = {c.get_attribute("data-status") for c in cells if c.get_attribute("data-status")}
    assert filled == {"succeeded", "running"} and len(cells) == 4
    built = next(c for c in cells if c.get_attribute("data-status") == "succeeded")
    assert " ms" in built.find_element("css selector", ".latency").text and "valid" in built.text
    assert done_id in built.find_element("css selector", "a").get_attribute("href")
    empty = [c for c in cells if c.get_attribute("data-target") == peer_target]
    assert len(empty) == 2 and all(c.find_elements("css selector", "button.build-cell") for c in empty)
    screenshot(browser, "models")

    empty[0].find_element("css selector", "button.build-cell").click()  # the first row: the fast spec
    until(lambda: "/ui/builds/" in browser.current_url, what="the new build's page")
    new_id = browser.current_url.rsplit("/", 1)[-1]
    info = farm.wait_build(new_id, timeout=120)
    assert info["status"] == "succeeded" and info["target"] == peer_target and new_id not in (done_id, slow_id)
    browser.get(f"{ui}/models/{model_id}")
    statuses = {c.get_attribute("data-target"): c.get_attribute("data-status")
                for c in css(browser, "#matrix tr.variant")[0].find_elements("css selector", "td.cell")}
    assert statuses == {ort_runtime: "succeeded", peer_target: "succeeded"}


def test_keys_sign_in_read_only_sees_no_action_and_posts_are_refused(farm_factory, browser, tmp_path: Path) -> None:
    from registry.services import keys

    farm: RunningFarm = farm_factory(workers=0, auth="required")
    reader = keys.create_key(farm.db, "viewer", ["read"]).token
    sdk, ui = farm.client(), f"{farm.url}/ui"
    model = sdk.upload(convnet(tmp_path / "k.onnx", channels=4, layers=1, seed=72))
    queued = sdk.submit(model.id, UNSERVED, batch_profile(), wait=False)  # nobody serves it: it stays queued

    browser.get(f"{ui}/builds/{queued.id}")
    assert "/ui/login" in browser.current_url  # no key: the sign-in form
    _sign_in(browser, "tf_00000000_" + "x" * 43)
    assert "unknown API key" in css(browser, "#login-error")[0].text
    _sign_in(browser, reader)
    until(lambda: browser.current_url.endswith(f"/ui/builds/{queued.id}"), what="back on the build page")
    assert css(browser, "#status")[0].text == "queued" and not css(browser, "#cancel")
    assert "viewer" in css(browser, "#who")[0].text
    browser.get(f"{ui}/models/{model.id}")
    assert css(browser, "#matrix td.cell") and not css(browser, "button.build-cell")
    browser.get(f"{ui}/fleet")
    assert [r.get_attribute("data-name") for r in css(browser, "#queues tr.queue")] == [queued.queue]

    # the server refuses what the page hides; the cookie alone never authorizes an API POST
    csrf = {"trtfarm_csrf": "c" * 32}
    with httpx.Client(base_url=farm.url, cookies={"trtfarm_token": reader, **csrf}) as http:
        assert http.post(f"/ui/builds/{queued.id}/cancel", data={"csrf": "c" * 32}).status_code == 403
        assert http.post(f"/ui/models/{model.id}/builds", data={"csrf": "c" * 32, "target": UNSERVED}
                         ).status_code == 403
        assert http.get(f"/v1/builds/{queued.id}/log").status_code == 200  # reads: the page's script
    with httpx.Client(base_url=farm.url, cookies={"trtfarm_token": farm.token, **csrf}) as http:
        assert http.post(f"/ui/builds/{queued.id}/cancel", data={"csrf": "d" * 32}).status_code == 403
        assert http.post(f"/v1/builds/{queued.id}/cancel").status_code == 401
    assert sdk.build(queued.id).status == "queued"

    # an admin signs in (after signing out) and cancels it from the page
    css(browser, "#who button")[0].click()
    until(lambda: "/ui/login" in browser.current_url, what="the sign-in form after signing out")
    browser.get(f"{ui}/builds/{queued.id}")
    _sign_in(browser, farm.token)
    until(lambda: css(browser, "#cancel"), what="the cancel button for an admin")[0].click()
    until(lambda: css(browser, "#status")[0].text == "cancelled", what="the cancelled status")
    assert sdk.build(queued.id).status == "cancelled"


def _sign_in(browser, token: str) -> None:
    until(lambda: css(browser, "#token"), what="the sign-in form")
    css(browser, "#token")[0].send_keys(token)
    css(browser, "#sign-in")[0].click()
    time.sleep(0.3)
