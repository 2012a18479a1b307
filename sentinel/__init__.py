"""Sentinel: a security alerting daemon for Okta Event Hooks."""

__version__ = "0.1.0"
