"""Fallback policy and budget, backend health state and its active checker."""
