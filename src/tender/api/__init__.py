"""The HTTP API (FastAPI): auth, idempotency, errors, one router module per resource.

An entry point. It may import tender.http, bootstrap, services, domain and the shared leaves (config,
errors); never web or worker: api/app.py, the app's composition root, alone mounts the hosted pages'
router beside the API's. From store it takes only the connection's type (Conn, the parameter of an
idempotent change) and retry.py's test for a lost connection, never a query.

Routes open no connection and no transaction. A read calls a service function that takes the
container's Database and opens its own connection. A change calls a service entry point that opens its
own transaction, or, for a POST under an Idempotency-Key, hands its change to idempotent.post: the
idempotency service (services/idempotency.run) opens the transaction, runs the change in it (service
functions taking that Conn) and stores the answer in the same transaction.
"""
