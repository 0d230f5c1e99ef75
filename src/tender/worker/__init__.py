"""Background work: due rows claimed in batches under leases, and the pumps that hand them to services.

An entry point (the `tender worker` process): it may import bootstrap, services, store and domain, never
api, web or tender.http. The units of work are the services': a pump's batch claims its rows in a short
transaction, works on them outside any transaction under the lease, and writes each result back in a
transaction of its own; the worker adds only the lease renewals of claim.held (one statement each) and
its LISTEN connection, which carries no work.
"""
