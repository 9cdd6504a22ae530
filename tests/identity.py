"""The name an adapter is known by in results, test ids and baselines: its declared ``name``, not its load spec."""

from __future__ import annotations

import importlib


def declared(ref: str) -> str:
    """``module:Class`` -> the class's declared ``name`` (without building it); a built-in name is its own."""
    if ":" not in ref:
        return ref
    module, _, attribute = ref.partition(":")
    return getattr(getattr(importlib.import_module(module), attribute), "name", "") or ref
