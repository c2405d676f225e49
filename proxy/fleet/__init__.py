"""Fleet mode: several replicas sharing one runtime state in Redis (docs/operations.md)."""
