"""sentinel: security monitoring for election tally servers."""

__version__ = "0.1.0"
