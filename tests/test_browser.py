"""The report in a real browser: Debian's headless Chromium, driven by Selenium.

`make test` installs chromium and chromium-driver where apt is available (.ci/run does);
Selenium is told where the driver is, so it never downloads a browser.
"""

from __future__ import annotations

import base64

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from bench.core import records
from bench.report import writer
from tests.factories import fake_run

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
LAPTOP = (1366, 768)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# On a loaded machine the page can still be decoding its images when get() returns.
SETTLE_SECONDS = 60


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={LAPTOP[0]},{LAPTOP[1]}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory, browser):
    """A report of 6 search trials (1 failed) and a seed baseline, open in the browser."""
    results = tmp_path_factory.mktemp("results")
    run_dir = fake_run(results, run="night", n=6, failed=1)
    out = results / "report"
    index = writer.write_report([run_dir], out)
    browser.get(index.as_uri())
    pngs = len(list(out.glob("*.png")))
    WebDriverWait(browser, SETTLE_SECONDS).until(
        lambda b: b.execute_script(
            "return document.readyState === 'complete' && document.images.length === arguments[0]"
            " && [...document.images].every(img => img.complete)",
            pngs,
        )
    )
    finished = len(records.completed(records.load_records(run_dir)))
    return out, finished


def test_every_image_loads_and_the_leaderboard_has_every_trial(browser, page):
    out, finished = page
    widths = browser.execute_script(
        "return [...document.images].map(img => img.complete ? img.naturalWidth : 0)"
    )
    assert len(widths) == len(list(out.glob("*.png")))
    assert widths and min(widths) > 0
    rows = browser.execute_script(
        """const heads = [...document.querySelectorAll('h2')];
        let next = heads.find(h => h.textContent === 'Leaderboard').nextElementSibling;
        while (next && !next.querySelector('table')) next = next.nextElementSibling;
        return next.querySelectorAll('tbody tr').length;"""
    )
    assert rows == finished  # 5 finished search trials and the seed baseline
    shot = out / "screenshot.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(PNG_MAGIC)


def test_the_page_fits_a_laptop_screen_with_the_summary_first(browser, page):
    page_width, view_width = browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert page_width <= view_width  # wide tables scroll inside their box, not the page
    widest = browser.execute_script(
        "return Math.max(...[...document.images].map(i => i.getBoundingClientRect().width))"
    )
    assert widest <= view_width
    summary_top = browser.execute_script(
        """const p = [...document.querySelectorAll('p')]
            .find(e => e.textContent.startsWith('Recommended configuration to release'));
        return p.getBoundingClientRect().top;"""
    )
    assert summary_top < LAPTOP[1]  # the winner is on the first screen


def test_the_page_prints_with_images_scaled_to_the_paper(browser, page):
    pdf = browser.execute_cdp_cmd("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.7})
    assert base64.b64decode(pdf["data"]).startswith(b"%PDF")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        body, widest = browser.execute_script(
            """return [document.body.getBoundingClientRect().width,
            Math.max(...[...document.images].map(i => i.getBoundingClientRect().width))]"""
        )
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    assert widest <= body
