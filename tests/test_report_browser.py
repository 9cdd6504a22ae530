"""The report in a real browser: headless Chromium (Debian's package), driven by Selenium.

``.ci/run`` installs Chromium; where it is absent these tests skip and say what to install.
"""

from __future__ import annotations

import os

import pytest

from tests import browser

if browser.missing() and os.environ.get("CONV_CONFORMANCE_REQUIRE_BROWSER"):
    # CI installs the browser: there a missing one is a broken set-up, not a reason to skip.
    raise RuntimeError(f"CONV_CONFORMANCE_REQUIRE_BROWSER is set, but {browser.missing()}")
pytestmark = pytest.mark.skipif(browser.missing() is not None, reason=f"no browser test: {browser.missing()}")


def _visible_rows(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#matrix-table tbody tr'))"
        ".filter(r => r.offsetParent !== null).map(r => r.dataset.cell);"
    )


def _set(driver, name: str, value: str) -> None:
    """Set a filter control as a user would, firing the events the page listens to."""
    driver.execute_script(
        "const el = document.querySelector(`#filter [name=${arguments[0]}]`); el.value = arguments[1];"
        "for (const kind of ['input', 'change']) el.dispatchEvent(new Event(kind, {bubbles: true}));",
        name, value,
    )  # fmt: skip


def test_the_report_loads_without_console_errors_and_shows_matrix_and_cards(sample_run):
    from selenium.webdriver.common.by import By

    with browser.chromium() as driver:
        driver.get((sample_run / "report.html").as_uri())
        assert driver.title.startswith("Convolution conformance")
        assert browser.console_errors(driver) == []
        assert driver.find_element(By.ID, "matrix-table").is_displayed()
        cards = driver.find_elements(By.CSS_SELECTOR, "article.card")
        assert cards and cards[0].find_element(By.TAG_NAME, "svg").is_displayed()
        assert driver.find_element(By.ID, "filter").is_displayed()
        assert cards[0].find_element(By.CSS_SELECTOR, "button.copy").is_displayed()


def test_the_filter_hides_rows(sample_run):
    with browser.chromium() as driver:
        driver.get((sample_run / "report.html").as_uri())
        every = _visible_rows(driver)
        assert len(every) == 6  # forward/2d/float64/{none, symmetric, asymmetric, same, valid, fastpath}

        _set(driver, "text", "same")
        assert _visible_rows(driver) == ["forward/2d/float64/same"]

        _set(driver, "text", "")
        _set(driver, "adapter", "torch")
        _set(driver, "status", "failed")
        assert _visible_rows(driver) == []  # torch passes every cell
        _set(driver, "status", "passed")
        assert _visible_rows(driver) == every

        _set(driver, "adapter", "")
        _set(driver, "status", "")
        assert _visible_rows(driver) == every
        assert "6 of 6 cells shown" in driver.find_element("id", "shown").text
        assert browser.console_errors(driver) == []


def test_with_scripts_off_every_row_shows_and_no_dead_controls(sample_run):
    from selenium.webdriver.common.by import By

    with browser.chromium(javascript=False) as driver:
        driver.get((sample_run / "report.html").as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, "#matrix-table tbody tr")
        assert rows and all(row.is_displayed() for row in rows)
        assert not driver.find_element(By.ID, "filter").is_displayed()
        assert not any(b.is_displayed() for b in driver.find_elements(By.CSS_SELECTOR, "button.copy"))
        assert driver.find_element(By.CSS_SELECTOR, "article.card pre").is_displayed()


def test_markup_that_slipped_past_escaping_cannot_run(sample_run, tmp_path):
    """The page's Content-Security-Policy allows its own script and style by hash only: were an adapter's text
    ever inserted unescaped, an event handler or a script in it would not run."""
    page = (sample_run / "report.html").read_text()
    hostile = ('<img src="data:," onerror="document.title=\'pwned by onerror\'">'
               "<script>document.title = 'pwned by script';</script>"
               '<div id="styled" style="display: none">styled</div>')  # fmt: skip
    injected = tmp_path / "injected.html"
    injected.write_text(page.replace("<main>", "<main>" + hostile, 1))
    with browser.chromium() as driver:
        driver.get(injected.as_uri())
        assert "pwned" not in driver.title and driver.title.startswith("Convolution conformance")
        assert driver.execute_script("return document.getElementById('styled').offsetParent !== null")
        # The page's own script still runs: its hash is in the policy.
        assert driver.execute_script("return !document.getElementById('filter').hidden")
