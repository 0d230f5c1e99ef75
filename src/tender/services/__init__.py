"""Use cases, one module per capability. A service owns its transaction (its unit of work).

A service's entry points (what api, web, the CLI and the worker call) take the Database and open their
unit of work themselves: a transaction for a change (a lone statement, such as a purge, may run on an
autocommit connection), a connection for a read. A function that takes a Conn is a part of a unit of
work and runs in its caller's: another service's; idempotency.run's, which opens the transaction of an
idempotent POST, runs the route's change in it and stores the answer with it; or the worker's batch
pump's, which claims a batch and writes its results back in transactions of its own and calls the
services' steps in them. Processors are called between transactions, never inside one (a pump holds a
lease on its rows, not a transaction, while the acquirer answers).

Services import store, processors, domain and the shared leaves (config, errors, vault); never an entry
point, tender.http or bootstrap.
"""
