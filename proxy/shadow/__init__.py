"""Shadow traffic: mirror requests to the other backend, compare the answers, and
turn the differences into a parity number per flag and per route."""
