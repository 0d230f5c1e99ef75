"""PostgreSQL: the engine (embedded or external), the pool, the migrations and every SQL query.

Query functions take the Conn of their caller's unit of work and neither open nor commit a transaction:
the services do, through Database.transaction and Database.connection (store/db.py). The store imports
domain (its records and rules) and nothing above it: never services, processors or an entry point.
"""
