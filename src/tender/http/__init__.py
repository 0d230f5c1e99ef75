"""What the two HTTP entry points share: the API (tender.api) and the shopper's pages (tender.web).

Holds the request dependencies both take (the container, the live status hub) and the Server-Sent Events
response both stream a payment's status with, so that neither imports the other: api and web are
independent, and only the app's composition root (api/app.py) mounts both. Like them, it opens no
connection or transaction: it calls services, which own their units of work. It may import services,
the composition root (bootstrap), domain and store.db's types, never api or web.
"""
