"""PostgreSQL: the engine (embedded or external), the pool, the migrations and every SQL query."""
