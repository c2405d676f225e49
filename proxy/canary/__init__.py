"""The automated canary: statistics, verdicts and the state machine (pure), the
per-interval tap, and the judge loop that moves a flag through its steps."""
