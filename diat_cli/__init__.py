"""diat: identity-aware facial attribute transfer (Li, Zuo, Zhang, arXiv 1610.05586)."""

__version__ = "0.1.0"
