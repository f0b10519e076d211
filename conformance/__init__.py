"""Lemonade conformance: tests mail servers the way clients behind firewalls, NATs and proxies reach them."""

__version__ = "0.1.0"
