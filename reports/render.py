"""Render a results file into one self-contained HTML page.

jinja2 with autoescaping on: every string that came from an adapter (names,
versions, error text, repro scripts) is untrusted and is escaped wherever it
lands.  The page fetches nothing: its CSS, its small script and its SVG are
inline, and it reads fully with scripts off (the script only adds the filter
and the copy buttons).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
import os
import tempfile
from pathlib import Path

import jinja2

from conformance.results import Results, read
from reports import heatmap_svg
from reports.model import Report, as_float, build


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["rate"] = _rate
    env.filters["ratio"] = _ratio
    env.filters["css"] = _css
    env.filters["svg"] = heatmap_svg.shapes
    return env


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _ratio(value: float | str | None) -> str:
    value = as_float(value)  # a number, or its strict-JSON text ("inf")
    if value is None or math.isnan(value):
        return ""
    if math.isinf(value):
        return "∞"
    return "0" if value == 0 else f"{value:.3g}"


def _css(outcome: str) -> str:
    return "s-" + outcome.replace(" ", "-")


def render(results: Results, *, results_path: str = "", baseline: Results | None = None,
           baseline_path: str | None = None) -> str:  # fmt: skip
    """The report page for ``results`` (and, compared against it, ``baseline``)."""
    return render_report(build(results, results_path=results_path, baseline=baseline, baseline_path=baseline_path))


def render_report(report: Report) -> str:
    """The page for an already built :class:`~reports.model.Report` (a run's, or a scoreboard's)."""
    env = _environment()
    style, script = (env.loader.get_source(env, name)[0] for name in ("report.css", "report.js"))
    return env.get_template("report.html.j2").render(
        report=report, style=style, script=script, style_hash=csp_hash(style), script_hash=csp_hash(script)
    )


def csp_hash(text: str) -> str:
    """The Content-Security-Policy source that allows exactly this inline element's text."""
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def write_report(results_path: str | os.PathLike, output: str | os.PathLike,
                 baseline_path: str | os.PathLike | None = None) -> Path:  # fmt: skip
    """Read ``results_path`` (and ``baseline_path``), write the page to ``output``.

    Raises :class:`~conformance.results.ResultsError` for an unreadable, malformed
    or unknown-version file, before anything is written.
    """
    results = read(results_path)
    baseline = read(baseline_path) if baseline_path else None
    page = render(results, results_path=str(results_path), baseline=baseline,
                  baseline_path=str(baseline_path) if baseline_path else None)  # fmt: skip
    return write_page(page, Path(output))


def write_page(page: str, output: Path) -> Path:
    """Write ``page`` to ``output`` atomically."""
    output.parent.mkdir(parents=True, exist_ok=True)
    # Atomic, like the results file: a reader (or a CI artifact upload) never sees half a page.
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}", suffix=".tmp", dir=output.parent)
    try:
        # An adapter's exception text can hold a lone surrogate ("\\udcff"), which JSON carries but UTF-8
        # cannot encode: show it as its escape rather than fail to write the page.
        with os.fdopen(fd, "wb") as handle:
            handle.write(page.encode("utf-8", "backslashreplace"))
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return output


__all__ = ["render", "render_report", "write_page", "write_report"]
