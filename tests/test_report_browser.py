"""The HTML report as a person sees it: opened in headless Chromium (Debian's chromium and
chromium-driver, driven by selenium), screenshotted, every image rendered, the table there, and
nothing fetched from anywhere but the report's own folder. Skipped with a reason where Chromium
is absent, except under CI (MTAD_REQUIRE_CHROMIUM=1), where a missing browser fails."""

import json
import os
import shutil
from pathlib import Path

import pytest

from mtad.report.formats import write_tables
from mtad.report.plots import write_plots
from mtad.report.html import write_report
from mtad.report.rows import build_rows, collect

from test_tables import PAPER, store  # noqa: F401 (a fixture)

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# Chromium's own background traffic is refused on this network; these flags keep it quiet.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--window-size=1500,1200"]


def require_browser():
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        reason = f"{', '.join(missing)} not installed (Debian packages chromium chromium-driver; pip selenium)"
        if os.environ.get("MTAD_REQUIRE_CHROMIUM"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def report(store):
    """The report of test_tables' hand-made store (three decoders, two MTAD seeds, paper rows)."""
    table = build_rows(collect(store), PAPER)
    write_tables(store, table.rows)
    return write_report(store, table.rows, write_plots(store, table.rows, table.runs))


def test_report_renders_in_chromium(report, tmp_path):
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # the DevTools network events
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get(report.as_uri())
        images = driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        assert images, "the report shows no plot"
        assert all(done and width > 0 for _, done, width in images), f"images that did not render: {images}"
        assert driver.execute_script("return document.querySelectorAll('table tr').length") > 1
        events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
        fetched = {e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"}
        # Only these schemes leave the page; Chromium's own pages (chrome://, chrome-untrusted://
        # new-tab-page, ...) load in the background at times and are not the report's doing.
        fetched = {url for url in fetched if url.startswith(("file:", "http:", "https:", "ws:", "wss:", "ftp:"))}
        folder = report.parent.as_uri()
        assert report.as_uri() in fetched and all(url.startswith(folder) for url in fetched), \
            f"fetched outside the report: {sorted(fetched)}"
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1500, min(height + 100, 8000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if os.environ.get("MTAD_SCREENSHOT"):  # where to keep a copy to look at
            shutil.copyfile(shot, Path(os.environ["MTAD_SCREENSHOT"]))
    finally:
        driver.quit()
