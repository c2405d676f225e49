"""The config file: models, value syntax and short forms, and the loader with line numbers."""
