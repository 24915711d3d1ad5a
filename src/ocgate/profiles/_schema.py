"""Validation of written profiles against the schemas the project keeps (``schemas/*.xsd``).

The schemas are loaded once per process with :mod:`xmlschema` (a maintained pure-Python XSD 1.0
validator); a profile that does not validate is a :class:`~ocgate.errors.ConfigError` quoting
the validator's reason and the element's path.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Literal

import xmlschema

from ocgate.errors import ConfigError

__all__ = ["SCHEMAS", "Kind", "validate"]

Kind = Literal["client", "mgmt", "nvm"]

SCHEMAS: dict[str, str] = {
    "client": "AnyConnectProfile.xsd",
    "mgmt": "AnyConnectProfile.xsd",
    "nvm": "NVMProfile.xsd",
}
"""Profile kind → its schema file under ``ocgate/profiles/schemas``."""


@functools.cache
def _schema(name: str) -> xmlschema.XMLSchema:
    source = (
        resources.files("ocgate.profiles").joinpath("schemas").joinpath(name).read_text("utf-8")
    )
    return xmlschema.XMLSchema(source)


def validate(kind: Kind, data: bytes) -> None:
    """Check ``data`` against the schema of ``kind``.

    :raises ConfigError: it does not validate (the message says where and why).
    """
    schema = _schema(SCHEMAS[kind])
    try:
        schema.validate(data.decode("utf-8"))
    except (xmlschema.XMLSchemaException, UnicodeDecodeError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        path = getattr(exc, "path", None)
        where = f" at {path}" if path else ""
        raise ConfigError(
            f"the {kind} profile does not validate against {SCHEMAS[kind]}{where}: {reason}"
        ) from None
