"""The one error the sandbox raises on its own: a confinement step did not take effect."""

from __future__ import annotations

from ocgate.errors import OcgateError

__all__ = ["SandboxError"]


class SandboxError(OcgateError, RuntimeError):
    """A privilege drop or confinement step was refused, or its effect could not be verified.

    A process that gets this error must not go on serving clients: the caller logs it and exits.
    System calls that fail outright raise ``OSError`` instead, with the kernel's ``errno``.
    """
