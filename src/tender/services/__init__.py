"""Use cases, one module per capability. A service owns its transaction (its unit of work)."""
