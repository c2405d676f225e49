"""Counters, Prometheus exposition and the status view."""
