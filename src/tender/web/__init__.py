"""The shopper's pages: hosted checkout (server-rendered with Jinja2, small dependency-free JS and CSS)."""
