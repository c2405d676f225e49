"""Turnout benchmark harness (see bench/README.md)."""
