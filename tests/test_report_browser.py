"""The HTML report as a person sees it: opened in headless Chromium (Debian's chromium and
chromium-driver, driven by selenium) in a 1400 px window, screenshotted: the claims first, then the
paired comparisons, every plot rendered with its caption, the table last, nothing fetched from
anywhere but the report's own folder, and nothing wider than the window. Both the report of a
hand-made store and the committed one (results/report/index.html). Skipped with a reason where
Chromium is absent, except under CI (MTAD_REQUIRE_CHROMIUM=1), where a missing browser fails.
MTAD_FIRST_SCREEN=PATH keeps the committed report's first screenful there (a small PNG)."""

import json
import os
import shutil
from pathlib import Path

import pytest

from mtad.report.claims import VERDICTS
from mtad.report.formats import write_tables
from mtad.report.paired import comparisons
from mtad.report.plots import write_plots
from mtad.report.html import write_report
from mtad.report.rows import build_rows, collect, load_paper

from test_tables import PAPER, store  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "results" / "report" / "index.html"
WIDTH, HEIGHT = 1400, 900
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# Chromium's own background traffic is refused on this network; these flags keep it quiet.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--window-size={WIDTH},{HEIGHT}"]


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
    return write_report(store, table.rows, write_plots(store, table.rows, table.runs), "a note", "",
                        comparisons(collect(store), None), load_paper(PAPER))


def open_page(page: Path, tmp_path: Path):
    """Chromium on ``page`` at WIDTH x HEIGHT, logging its network events."""
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
    driver.set_window_size(WIDTH, HEIGHT)
    driver.get(page.as_uri())
    return driver


def check_page(driver, page: Path) -> None:
    """What a reader must find, in this order, and what must not happen."""
    order = driver.execute_script("return [...document.querySelectorAll('section')].map(s => s.id)")
    assert order == ["claims", "comparisons", "plots", "table"], order
    verdicts = driver.execute_script(
        "return [...document.querySelectorAll('#claims tr')].slice(1).map(r => r.lastElementChild.textContent)")
    assert verdicts and set(verdicts) <= set(VERDICTS), verdicts
    assert driver.execute_script("return document.querySelectorAll('#comparisons table tr').length") > 1
    figures = driver.execute_script(
        "return [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth, "
        "(i.closest('figure')?.querySelector('figcaption')?.textContent || '').trim().length])")
    assert figures, "the report shows no plot"
    assert all(done and width > 0 for _, done, width, _ in figures), f"images that did not render: {figures}"
    assert all(words > 40 for *_, words in figures), f"plots without a caption: {figures}"
    assert driver.execute_script("return document.querySelectorAll('#table table tr').length") > 1
    # no horizontal scroll bar: nothing wider than the window
    inner, scroll = driver.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
    assert inner <= WIDTH and scroll <= inner, f"the page is {scroll} px wide in a {inner} px window"
    events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    fetched = {e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"}
    # Only these schemes leave the page; Chromium's own pages (chrome://, chrome-untrusted://
    # new-tab-page, ...) load in the background at times and are not the report's doing.
    fetched = {url for url in fetched if url.startswith(("file:", "http:", "https:", "ws:", "wss:", "ftp:"))}
    folder = page.parent.as_uri()
    assert page.as_uri() in fetched and all(url.startswith(folder) for url in fetched), \
        f"fetched outside the report: {sorted(fetched)}"


def test_report_renders_in_chromium(report, tmp_path):
    driver = open_page(report, tmp_path)
    try:
        check_page(driver, report)
        # the paper-only rows are folded: the open tables of the full table hold our rows alone
        shown = driver.execute_script(
            "return [...document.querySelectorAll('#table h3 + table tr')].slice(1).map(r => r.children[0].textContent)")
        assert shown and set(shown) <= {"ar", "spd", "mtad"}, shown
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(WIDTH, min(height + 100, 8000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if os.environ.get("MTAD_SCREENSHOT"):  # where to keep a copy to look at
            shutil.copyfile(shot, Path(os.environ["MTAD_SCREENSHOT"]))
    finally:
        driver.quit()


def test_the_committed_report_answers_first_in_chromium(tmp_path):
    if not COMMITTED.exists():
        pytest.skip("no committed report")
    driver = open_page(COMMITTED, tmp_path)
    try:
        check_page(driver, COMMITTED)
        # the claims table is on the first screen
        bottom, screen = driver.execute_script(
            "return [document.querySelector('#claims table').getBoundingClientRect().bottom, window.innerHeight]")
        assert bottom <= screen, f"the claims table ends at {bottom} px, below the first screen ({screen} px)"
        if os.environ.get("MTAD_FIRST_SCREEN"):
            from PIL import Image

            shot = tmp_path / "first.png"
            assert driver.save_screenshot(str(shot))
            Image.open(shot).convert("RGB").quantize(64).save(os.environ["MTAD_FIRST_SCREEN"], optimize=True)
    finally:
        driver.quit()
