"""Every package has an ``__all__`` whose names all exist (STYLE rule 10)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import ocgate

PACKAGES = sorted(
    name
    for _, name, is_pkg in pkgutil.walk_packages(ocgate.__path__, "ocgate.")
    if is_pkg and not name.rsplit(".", 1)[-1].startswith("_")
)


def test_all_packages_found() -> None:
    expected = {"ocgate.config", "ocgate.cstp", "ocgate.http", "ocgate.session", "ocgate.tls"}
    assert expected <= set(PACKAGES)


@pytest.mark.parametrize("name", ["ocgate", *PACKAGES])
def test_all_names_exist_and_are_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr!r}"
        assert not attr.startswith("_") or attr == "__version__"
