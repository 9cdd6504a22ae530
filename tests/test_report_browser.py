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
        assert len(every) == 5  # forward/2d/float64/{none, symmetric, asymmetric, same, valid}

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
        assert "5 of 5 cells shown" in driver.find_element("id", "shown").text
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
