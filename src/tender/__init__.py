"""Tender: a self-hosted payment service provider."""

__version__ = "0.1.0"
