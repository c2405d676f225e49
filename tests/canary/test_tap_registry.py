"""Several features on one flag: the tap registry keeps every factory of a flag."""

from __future__ import annotations

from proxy.canary.tap import CanaryTap
from proxy.exchange.hooks import TapRegistry, add_tap_factory, remove_tap_factory


def test_factories_of_one_flag_stack_and_unstack() -> None:
    registry: TapRegistry = {}
    canary, shadow, other = CanaryTap(), CanaryTap(), CanaryTap()
    add_tap_factory(registry, "main", canary)
    add_tap_factory(registry, "main", shadow)
    add_tap_factory(registry, "main", canary)  # registering twice changes nothing
    add_tap_factory(registry, "other", other)
    assert registry == {"main": (canary, shadow), "other": (other,)}
    remove_tap_factory(registry, "main", canary)
    assert registry == {"main": (shadow,), "other": (other,)}
    remove_tap_factory(registry, "main", shadow)
    remove_tap_factory(registry, "main", shadow)  # already gone: nothing to do
    assert registry == {"other": (other,)}
