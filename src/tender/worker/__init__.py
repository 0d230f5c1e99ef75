"""Background work: due rows claimed in batches under leases, and the pumps that hand them to services.

An entry point (the `tender worker` process): it may import bootstrap, services, store and domain, never
api, web or tender.http. It is the one entry point that opens transactions, and only a pump's: the
generic batch pump (worker/pump.py) claims a batch in one transaction, in which the kind's service
prepares its work; handles the rows outside any transaction while renewing their lease; and writes the
results back in one more, in which the service writes each under the lease token. Everything else it
runs (settlement, housekeeping) is a service entry point that opens its own unit of work. Its LISTEN
connection only wakes the pumps.
"""
