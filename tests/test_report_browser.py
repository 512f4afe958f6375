"""The HTML report as a person sees it: opened in headless Chromium (Debian's chromium and
chromium-driver, driven by selenium), screenshotted, every image rendered, the table there, and
nothing fetched from anywhere but the report's own folder. Skipped with a reason where Chromium
is absent, except under CI (MTAD_REQUIRE_CHROMIUM=1), where a missing browser fails."""

import os
import shutil
from pathlib import Path

import pytest

from mtad.table.formats import write_tables
from mtad.table.plots import write_plots
from mtad.table.report import write_report
from mtad.table.rows import build_rows

from test_tables import PAPER, add_run

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
def report(tmp_path):
    (tmp_path / "samples").mkdir()
    add_run(tmp_path, "ar1", "ar", 1, 1.0, [True, False, False, False])
    add_run(tmp_path, "spd1", "spd", 1, 0.5, [True, False, True, False])
    add_run(tmp_path, "mtad1", "mtad", 1, 0.25, [True, True, True, False], joules=2.0)
    add_run(tmp_path, "mtad2", "mtad", 2, 0.25, [True, True, False, False], joules=2.0)
    table = build_rows(tmp_path, PAPER)
    write_tables(tmp_path, table.rows)
    return write_report(tmp_path, table.rows, write_plots(tmp_path, table.rows, table.runs))


def test_report_renders_in_chromium(report, tmp_path):
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get(report.as_uri())
        images = driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        assert images, "the report shows no plot"
        assert all(done and width > 0 for _, done, width in images), f"images that did not render: {images}"
        assert driver.execute_script("return document.querySelectorAll('table tr').length") > 1
        fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        folder = report.parent.as_uri()
        assert fetched and all(url.startswith(folder) for url in fetched), f"fetched outside the report: {fetched}"
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1500, min(height + 100, 8000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if os.environ.get("MTAD_SCREENSHOT"):  # where to keep a copy to look at
            shutil.copyfile(shot, Path(os.environ["MTAD_SCREENSHOT"]))
    finally:
        driver.quit()
