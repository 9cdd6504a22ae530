"""The conformance suite: one test module per chapter, parametrized by the report's cells.

Run it through ``conv-conformance run`` or ``pytest --pyargs conformance.suite --adapter NAME``.
"""
