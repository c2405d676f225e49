"""The canary's view of the shadow: comparisons and new's failed copies per interval."""

from __future__ import annotations

from proxy.canary.runner import ShadowParity
from proxy.canary.window import ShadowNumbers
from proxy.observe.stats import Stats


def test_each_call_gives_what_happened_since_the_last() -> None:
    stats, new_errors = Stats(), {"f": 0}
    parity = ShadowParity(stats, lambda flag: new_errors[flag])
    assert parity("f") is None  # nothing yet
    stats.shadow.update({("f", "match"): 8, ("f", "mismatch"): 2, ("f", "error"): 3})
    new_errors["f"] = 3
    assert parity("f") == ShadowNumbers(compared=10, mismatched=2, errors=3)
    stats.shadow[("f", "match")] = 9
    assert parity("f") == ShadowNumbers(compared=1, mismatched=0, errors=0)
    new_errors["f"] = 5  # only failures since: still news for the judge
    assert parity("f") == ShadowNumbers(compared=0, mismatched=0, errors=2)
    assert parity("f") is None
