"""Emulated intermediaries: mitmproxy addons composed by scenario strings, run per case by a NetworkPath."""
