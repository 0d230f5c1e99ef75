"""Tender: a self-hosted payment service provider."""
