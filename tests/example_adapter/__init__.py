"""An example third-party adapter package, laid out as a backend team would ship one.

``pyproject.toml`` here registers :class:`NumpyDirect` under the entry-point
group ``conv_conformance.adapters`` as ``numpy-direct``; once installed
(``pip install tests/example_adapter``), ``--adapter numpy-direct`` finds it.
Without installing, name the class: ``--adapter tests.example_adapter:NumpyDirect``.
"""

from .numpy_direct import NumpyDirect

__all__ = ["NumpyDirect"]
