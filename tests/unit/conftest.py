"""Settings for the unit tests (the only ones with property tests)."""

from hypothesis import settings

# The suite runs on shared machines (CI: two cores, namespaces and servers of the interop tests
# beside it): Hypothesis's default per-example time limit (200 ms) fails a property test on a
# scheduling hiccup, not on a bug. The number of examples still bounds each test.
settings.register_profile("ocgate", deadline=None)
settings.load_profile("ocgate")
