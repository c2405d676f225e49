"""The admin API and the CLI's client for it."""
