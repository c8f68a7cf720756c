"""The web application in a real browser: Debian's Chromium, driven headless by Selenium through
Debian's chromedriver, against ``srdose serve`` running as its own process on 127.0.0.1.

The database is built by ingesting synthetic RDSRs of three units (one with physics data) and
recalculating them; the users are made with ``srdose users add``. The browser signs in through the
form, filters the event list from the form, sees the unit page's charts drawn (a DOM check and
Chart.js's own data, against the JSON the page draws from), downloads the events CSV from the
page's link and compares it with ``srdose export events`` of the same database, and signs out.

Nothing is downloaded at run time: the driver's path is given (Selenium Manager never runs) and
``SE_OFFLINE`` is set. Without Chromium, its driver or Selenium the tests skip, saying which
(under CI, where ``CI`` is set, they fail instead: CI must not pass by skipping).

``SRDOSE_SCREENSHOTS=1`` writes the screenshots (1280x800) to ``docs/screenshots/`` for the README;
otherwise they go to the test's temporary folder.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import parse_qs, urlsplit
from urllib.request import urlopen

import pytest

from srdose import synth as S
from srdose.config import WebSettings
from srdose.ingest import Ingestor
from srdose.pseudonym import Pseudonymiser
from srdose.quarantine import QuarantineFolder
from srdose.store import DoseStore, alerts
from srdose.synth.vendors import make_unit

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PASSWORD = "correct horse battery"
PHYSICS_HOLOGIC = REPO / "sample_data" / "physics" / "example_synthetic_hologic_unit0.csv"
SIZE = (1280, 800)


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            return f"{path} is missing (Debian package {package})"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (extra 'test')"
    return None


# decided before any database or server is built for nothing; CI must not pass by skipping
pytestmark = pytest.mark.skipif(_missing() is not None and not os.environ.get("CI"), reason=str(_missing()))
# bounds on waiting for things that happen in another process, not assertions about speed
SERVER_START_S = 120.0
BROWSER_WAIT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRDOSE_")}
    env["SRDOSE_DATA_DIR"] = str(data_dir)
    env["COLUMNS"] = "250"
    return env


def _srdose(world: dict[str, Any], *args: object) -> str:
    """Run an ``srdose`` command on the test database; its output (it must succeed)."""
    r = subprocess.run(
        [sys.executable, "-m", "srdose", "--db", world["url"], *[str(a) for a in args]],
        env=_env(world["data"]),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three units' synthetic studies, ingested and recalculated; a physicist and a viewer."""
    tmp = tmp_path_factory.mktemp("browser")
    data = tmp / "data"
    data.mkdir()
    src = tmp / "in"
    # the Hologic unit busy enough over a quarter for weekly points on its ratio control chart
    quarter = (dt.date(2025, 1, 6), dt.date(2025, 3, 28))
    S.generate("hologic", 120, src / "hologic", seed=90, dbt_fraction=0.25, date_range=quarter)
    for i, vendor in enumerate(("siemens", "ge")):
        S.generate(vendor, 8, src / vendor, seed=91 + i, dbt_fraction=0.25)
    url = f"sqlite:///{tmp / 'browser.sqlite'}"
    store = DoseStore(url, Pseudonymiser(b"2" * 64))
    try:
        summary = Ingestor(store, QuarantineFolder(tmp / "quarantine"), batch_size=50).ingest_paths([src])
        assert summary.n_quarantined == 0
        # an alert rule that fires on this data: every unit is silent (its studies are in the past)
        alerts.add_rule(store, "silent", "cli:test", days=1)
    finally:
        store.close()
    world: dict[str, Any] = {"tmp": tmp, "data": data, "url": url, "hologic": make_unit("hologic", 0).serial}
    _srdose(world, "physics", "import", PHYSICS_HOLOGIC)  # so the unit page has fits to draw
    _srdose(world, "recalc")
    _srdose(world, "alerts", "check")
    pw = tmp / "password.txt"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    _srdose(world, "users", "add", "phil", "--role", "physicist", "--password-file", pw)
    _srdose(world, "users", "add", "vera", "--role", "viewer", "--password-file", pw)
    export = tmp / "export.csv"
    _srdose(world, "export", "events", "--out", export)
    with export.open(newline="") as fh:
        world["events"] = list(csv.DictReader(fh))
    assert len(world["events"]) > 50
    return world


@pytest.fixture(scope="module")
def server(world: dict[str, Any]) -> Iterator[str]:
    """``srdose serve`` as its own process on a free loopback port; its base URL. Always stopped."""
    port = _free_port()
    log = (world["tmp"] / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "srdose", "--db", world["url"], "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=_env(world["data"]),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail("srdose serve exited: " + (world["tmp"] / "serve.log").read_text())
            try:
                with urlopen(base + "/login", timeout=5) as r:
                    if r.status == 200:
                        break
            except (URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"srdose serve did not answer within {SERVER_START_S:.0f} s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        log.close()


@pytest.fixture(scope="module")
def shots(world: dict[str, Any]) -> Path:
    if os.environ.get("SRDOSE_SCREENSHOTS") == "1":
        folder = REPO / "docs" / "screenshots"
    else:
        folder = world["tmp"] / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def downloads(world: dict[str, Any]) -> Path:
    folder = world["tmp"] / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def browser(world: dict[str, Any], downloads: Path) -> Iterator[Any]:
    """Headless Chromium under Debian's chromedriver (skips, saying why, when it cannot start)."""
    why = _missing()
    if why:
        pytest.fail(f"CI needs the browser: {why}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # Selenium Manager must never fetch a driver or a browser
        profile = world["tmp"] / "chromium-profile"
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in (
            "--headless=new",
            "--no-sandbox",  # root in a container has no user namespace for the sandbox
            "--disable-dev-shm-usage",
            "--disable-gpu",
            f"--window-size={SIZE[0]},{SIZE[1]}",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--password-store=basic",
        ):
            options.add_argument(arg)
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(downloads),
                "download.prompt_for_download": False,
                "safebrowsing.enabled": False,
                "credentials_enable_service": False,
                "profile.password_manager_enabled": False,
            },
        )
        service = Service(executable_path=str(CHROMEDRIVER), log_output=str(world["tmp"] / "chromedriver.log"))
        try:
            driver = webdriver.Chrome(service=service, options=options)
        except Exception as exc:  # a browser that cannot start here is an environment problem, not the app's
            why = f"Chromium did not start under chromedriver: {str(exc).splitlines()[0][:300]}"
            if os.environ.get("CI"):
                pytest.fail(why)
            pytest.skip(why)
        try:
            # the page's own area is exactly SIZE, whatever the window's frame takes
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": SIZE[0], "height": SIZE[1], "deviceScaleFactor": 1, "mobile": False},
            )
            driver.set_page_load_timeout(BROWSER_WAIT_S)
            driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
            yield driver
        finally:
            driver.quit()


def _wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, BROWSER_WAIT_S, poll_frequency=0.1).until(condition, message=what)


def _sign_in(driver: Any, base: str, name: str, password: str = PASSWORD) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(base + "/login")
    driver.find_element(By.NAME, "username").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()


def _sign_out(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "form.logout button[type=submit]").click()
    _wait(driver, lambda d: urlsplit(d.current_url).path == "/login", "the sign-in page after signing out")


def _shot(driver: Any, folder: Path, name: str) -> None:
    assert driver.save_screenshot(str(folder / f"{name}.png"))


def _chart_points(charts: dict[str, Any]) -> dict[str, int]:
    """Data points each canvas draws from the unit's charts.json (reference lines and fits excluded)."""
    physics = charts.get("physics") or []
    fits = sum(2 * len(b["points"]) for b in physics[-1]["beams"]) if physics else 0
    return {
        "chart-mgd": len(charts["mgd"]["recalc"]) + len(charts["mgd"]["reported"]),
        "chart-ratio": len(charts["ratio"]["points"]),
        "chart-kv": sum(len(v) for v in charts["kv"]["series"].values()),
        "chart-force": sum(len(v) for v in charts["force"]["series"].values()),
        "chart-monthly": len(charts["monthly"]),
        "chart-fits": fits,
    }


def _event_key(row: dict[str, str]) -> tuple:
    """What identifies an event in both the page's CSV and ``srdose export events``."""
    mgd = row["mgd_recalc_mgy"]
    return (
        row["study_date"].replace("-", ""),
        row["patient_pseudonym"],
        row["device_serial"],
        row["acquisition"],
        row["laterality"],
        row["view"],
        round(float(row["kvp"]), 3) if row["kvp"] else None,
        round(float(mgd), 4) if mgd else None,
    )


def test_sign_in_filter_unit_charts_download_and_sign_out(
    world: dict[str, Any], server: str, browser: Any, downloads: Path, shots: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get(server + "/events")
    _wait(driver, lambda d: urlsplit(d.current_url).path == "/login", "a redirect to the sign-in page")
    _shot(driver, shots, "login")
    _sign_in(driver, server, "phil")
    _wait(driver, lambda d: urlsplit(d.current_url).path == "/", "the overview after signing in")
    assert "phil (physicist)" in driver.find_element(By.CSS_SELECTOR, "header .who").text
    _shot(driver, shots, "overview")

    # the event list, filtered from the form: one unit, one view
    unit, view = world["hologic"], "MLO"
    expected = [r for r in world["events"] if r["device_serial"] == unit and r["view"] == view]
    assert expected
    driver.get(server + "/events")
    form = driver.find_element(By.ID, "filters")
    Select(form.find_element(By.NAME, "unit")).select_by_value(unit)
    Select(form.find_element(By.NAME, "view")).select_by_visible_text(view)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(driver, lambda d: "view=MLO" in d.current_url, "the filtered event list")
    query = parse_qs(urlsplit(driver.current_url).query)
    assert query["unit"] == [unit] and query["view"] == [view]
    summary = driver.find_element(By.ID, "summary").text
    assert summary.startswith(f"{len(expected)} events;"), summary
    shown = driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")
    assert len(shown) == min(len(expected), WebSettings().page_size)
    assert all(r.find_elements(By.TAG_NAME, "td")[4].text == view for r in shown)
    _shot(driver, shots, "events")

    # the CSV of exactly what is shown, downloaded from the page's link
    link = driver.find_element(By.ID, "download-csv")
    assert parse_qs(urlsplit(link.get_attribute("href")).query)["format"] == ["csv"]
    link.click()

    def finished(_d: Any) -> Path | bool:
        done = [p for p in downloads.glob("srdose-events-*.csv") if p.stat().st_size > 0]
        return done[0] if done and not list(downloads.glob("*.crdownload")) else False

    got = _wait(driver, finished, "the events CSV in the download folder")
    with got.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(expected)
    assert sorted(map(_event_key, rows), key=repr) == sorted(map(_event_key, expected), key=repr)

    # the unit page: every chart with data is drawn, with as many points as the JSON holds
    driver.get(f"{server}/units/{unit}/charts.json")
    charts = json.loads(driver.find_element(By.TAG_NAME, "body").text)
    points = _chart_points(charts)
    assert points["chart-mgd"] > 0 and points["chart-fits"] > 0
    driver.get(f"{server}/units/{unit}")
    canvases = driver.find_elements(By.CSS_SELECTOR, "canvas[id^='chart-']")
    assert {c.get_attribute("id") for c in canvases} >= set(points)
    ours = [c for c in canvases if c.get_attribute("id") in points]
    _wait(
        driver,
        lambda d: all(c.get_attribute("data-rendered") in ("0", "1") for c in ours),
        "every chart drawn or declared empty",
    )
    for canvas in ours:
        cid = canvas.get_attribute("id")
        if points[cid] == 0:
            assert canvas.get_attribute("data-rendered") == "0", cid
            continue
        assert canvas.get_attribute("data-rendered") == "1", cid
        assert int(canvas.get_attribute("data-points")) == points[cid], cid
        assert canvas.size["width"] > 100 and canvas.size["height"] > 50, cid
    mgd = driver.find_element(By.ID, "chart-mgd")
    drawn = driver.execute_script("return Chart.getChart(arguments[0]).data.datasets[0].data.length", mgd)
    assert drawn == len(charts["mgd"]["recalc"]) > 0
    # and the canvas holds pixels, not only a chart object
    painted = driver.execute_script(
        "var c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "for (var i = 3; i < d.length; i += 4) { if (d[i] !== 0) return true; } return false;",
        mgd,
    )
    assert painted
    _shot(driver, shots, "unit")

    driver.get(server + "/alerts")
    assert "silent" in driver.find_element(By.TAG_NAME, "main").text.lower()
    _shot(driver, shots, "alerts")

    _sign_out(driver)
    driver.get(server + "/events")
    _wait(driver, lambda d: urlsplit(d.current_url).path == "/login", "the sign-in page: signed out")


def test_wrong_password_shows_the_error(server: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(browser, server, "phil", "not the password")
    error = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".error[role=alert]"), "the sign-in error")
    assert "Wrong user name or password" in error[0].text
    assert urlsplit(browser.current_url).path == "/login"
    assert not browser.find_elements(By.CSS_SELECTOR, "form.logout")


def test_a_viewer_is_refused_admin(server: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(browser, server, "vera")
    _wait(browser, lambda d: urlsplit(d.current_url).path == "/", "the overview after signing in")
    nav = {a.text for a in browser.find_elements(By.CSS_SELECTOR, "header nav a")}
    assert "Events" in nav
    browser.get(server + "/admin")
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "needs the admin role" in main
    assert not browser.find_elements(By.CSS_SELECTOR, "form[action$='/admin/users']")
    _sign_out(browser)
