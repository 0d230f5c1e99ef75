"""The shopper's pages: hosted checkout (server-rendered with Jinja2, small dependency-free JS and CSS).

An entry point like tender.api and independent of it: the request dependencies and the SSE stream both
use come from tender.http. It may import http, bootstrap, services, domain and the shared leaves, never
api, worker or store. Pages open no connection and no transaction: what a page shows is read by
services/checkout_page.py, and paying from the page's forms is that service's unit of work.
"""
