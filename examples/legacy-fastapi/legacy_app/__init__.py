"""The legacy side of Turnout's example migration: a FastAPI service in five tiers."""
