"""Live control: reloads, the runtime state file, the config watcher."""
