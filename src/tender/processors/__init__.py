"""Processors (connectors): the one interface every acquirer or PSP sits behind."""
