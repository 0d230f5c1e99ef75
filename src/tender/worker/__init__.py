"""Background work: due rows claimed in batches under leases, and the pumps that hand them to services."""
