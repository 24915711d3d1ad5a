"""Fixtures of the console tests: an app over the in-memory backend and a TLS test client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.console._fake import Harness, make_harness


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = make_harness()
    with h.client:
        yield h
