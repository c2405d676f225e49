"""The data plane: the listener and the Exchange that owns one request's life."""
