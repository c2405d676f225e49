"""Process lifecycle: one process, serve, worker supervision."""
