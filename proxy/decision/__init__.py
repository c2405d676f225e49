"""Which route and which backend: pure functions of the request and the compiled config (no I/O)."""
