"""A session record from sec-mod to a worker, with the configuration sent by reference.

Theory of operation: a worker's CONNECT gets the whole :class:`~ocgate.session.Session` from sec-mod
(pickled: both ends are ocgate's own processes, never a peer). Most sessions carry no settings of
their own, only the gateway's configuration, which the worker already has; pickling it with every
session cost more than the rest of the record (a ``Config`` has some 150 fields). So the sender's
configuration object is written as a reference (pickle's ``persistent_id``) and the receiver puts
its own configuration in its place. Both processes get every reload, so the two are the same file;
for the moments of a reload the worker's is the newer one, which is what a new tunnel should use.
A session of a ``[vhost:NAME]`` carries that vhost's configuration (one of ``Config.vhosts``),
written as ``vhost:NAME`` and replaced by the receiver's vhost of that name.

The same references serve sec-mod's session database (:class:`ConfigReferences`, the store's
codec of ``Session.extra``): each login saves its session four times or so, and the configuration
was most of each pickle's cost. A session restored after a restart takes the configuration of the
new run, as a reconnecting client's tunnel would anyway in the worker; one with settings of its
own (a per-user or per-group file, RADIUS attributes) keeps them, written whole as before. A row
naming a vhost the new configuration no longer has cannot be read, and the store drops it (the
user logs in again).
"""

from __future__ import annotations

import io
import pickle

from ocgate.config import Config
from ocgate.session import Session

__all__ = ["ConfigReferences", "dump_session", "load_session"]

_CONFIG_REF = "config"
_VHOST_REF = "vhost:"


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, config: Config) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._config = config

    def persistent_id(self, obj: object) -> str | None:
        if obj is self._config:
            return _CONFIG_REF
        vhosts = self._config.vhosts
        if isinstance(obj, Config) and obj.vhost_name and any(obj is v for v in vhosts):
            return _VHOST_REF + obj.vhost_name
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, config: Config) -> None:
        super().__init__(file)
        self._config = config

    def persistent_load(self, pid: object) -> object:
        if pid == _CONFIG_REF:
            return self._config
        if isinstance(pid, str) and pid.startswith(_VHOST_REF):
            vhost = self._config.vhost(pid[len(_VHOST_REF) :])
            if vhost.vhost_name == pid[len(_VHOST_REF) :]:
                return vhost
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


def dump_session(session: Session, config: Config) -> bytes:
    """``session`` pickled, with ``config`` (the sender's configuration) by reference."""
    buffer = io.BytesIO()
    _Pickler(buffer, config).dump(session)
    return buffer.getvalue()


def load_session(payload: bytes, config: Config) -> Session:
    """The session of :func:`dump_session`, with the receiver's ``config`` in place of the sender's.

    :raises pickle.UnpicklingError: the payload is not such a record.
    """
    session = _Unpickler(io.BytesIO(payload), config).load()
    if not isinstance(session, Session):
        raise pickle.UnpicklingError(f"expected a Session, got {type(session).__name__}")
    return session


class ConfigReferences:
    """A session store's codec of ``Session.extra`` that writes the configuration by reference.

    :param config: the configuration in force; the owner sets :attr:`config` again at every reload.
    """

    __slots__ = ("config",)

    def __init__(self, config: Config) -> None:
        self.config = config

    def dumps(self, extra: dict[str, object]) -> bytes:
        buffer = io.BytesIO()
        _Pickler(buffer, self.config).dump(extra)
        return buffer.getvalue()

    def loads(self, blob: bytes) -> object:
        """:raises pickle.UnpicklingError: a reference this configuration cannot resolve."""
        return _Unpickler(io.BytesIO(blob), self.config).load()
