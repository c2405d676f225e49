"""Turnout: a reverse proxy for moving an API from a legacy backend to a new one."""

__version__ = "0.1.0"
