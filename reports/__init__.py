"""The HTML compliance report: ``conv-conformance report RESULTS.json -o report.html``."""

from reports.render import render, write_report

__all__ = ["render", "write_report"]
