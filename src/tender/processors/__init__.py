"""Processors (connectors): the one interface every acquirer or PSP sits behind.

A processor speaks to its acquirer over the network and never touches the database: it imports domain
and the shared leaves (config, for the registry built from Settings; keyfiles), never store or services,
and a call to it is never part of a transaction (the services call it between theirs). Tender reaches
even its own simulator this way, over HTTP.
"""
