#!/usr/bin/env python3
"""Regenerate the README's report screenshots from a real run with deliberately buggy adapters.

    python docs/make_screenshots.py

Runs ``conv-conformance run --report`` on two faulty adapters from
``tests/faulty_adapters.py`` and PyTorch (the forward 2-D float64 cells), then
photographs the page in headless Chromium (see ``tests/browser.py``): the top of
the page, and the first failure card.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import chromium, missing  # noqa: E402
from tests.conftest import SAMPLE_ADAPTERS, SAMPLE_SLICE  # noqa: E402


def main() -> int:
    why = missing()
    if why:
        print(f"cannot take screenshots: {why}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as where:
        args = [sys.executable, "-m", "conformance.cli", "run", "--results", "results.json", "--report",
                "report.html", "-k", SAMPLE_SLICE, "--baseline", "none"]  # fmt: skip
        for adapter in SAMPLE_ADAPTERS:
            args += ["--adapter", adapter]
        subprocess.run(args, cwd=where, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
        page = Path(where, "report.html")
        with chromium(width=1300, height=1500) as driver:
            driver.get(page.as_uri())
            driver.save_screenshot(str(ROOT / "docs" / "report-overview.png"))
            card = driver.find_element("css selector", "article.card")
            driver.execute_script("arguments[0].scrollIntoView()", card)
            driver.save_screenshot(str(ROOT / "docs" / "report-failure-card.png"))
    print("wrote docs/report-overview.png and docs/report-failure-card.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
