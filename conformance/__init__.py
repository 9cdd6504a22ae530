"""conv-conformance: a property-based conformance suite for convolution implementations."""

__version__ = "0.1.0"
