"""Sessions from sec-mod to a worker: the configuration travels by reference (daemon/_wire.py)."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import pickle
from pathlib import Path

import pytest

from ocgate.config import Config, parse_config
from ocgate.daemon._wire import ConfigReferences, dump_session, load_session
from ocgate.gateway import SessionSettings
from ocgate.session import Session
from tests.unit.gateway.conftest import make_config_text


def _config(config_dir: Path, extra: str = "") -> Config:
    return parse_config(make_config_text(config_dir, "ipv4-network = 10.9.0.0/24\n" + extra),
                        source="test.conf")  # fmt: skip


def _session(config: Config) -> Session:
    return Session(
        sid="s1",
        token_digest=b"d" * 32,
        username="alice",
        created=1.0,
        authenticated_at=1.0,
        ipv4=ipaddress.IPv4Address("10.9.0.7"),
        extra={"settings": SessionSettings(config=config, hostname="laptop")},
    )


def _settings(session: Session) -> SessionSettings:
    settings = session.extra["settings"]
    assert isinstance(settings, SessionSettings)
    return settings


def test_the_senders_config_becomes_the_receivers(config_dir: Path) -> None:
    sender, receiver = _config(config_dir), _config(config_dir)
    payload = dump_session(_session(sender), sender)
    session = load_session(payload, receiver)
    assert _settings(session).config is receiver
    assert (session.username, session.ipv4, _settings(session).hostname) == (
        "alice",
        ipaddress.IPv4Address("10.9.0.7"),
        "laptop",
    )
    # The reference is what makes the record small: far smaller than with the config inside.
    assert len(payload) * 2 < len(pickle.dumps(_session(sender)))


def test_a_per_user_config_travels_whole(config_dir: Path) -> None:
    base = _config(config_dir)
    own = dataclasses.replace(base, dpd=17)
    session = load_session(dump_session(_session(own), base), base)
    assert _settings(session).config == own
    assert _settings(session).config is not base


def test_another_object_is_refused(config_dir: Path) -> None:
    with pytest.raises(pickle.UnpicklingError, match="expected a Session"):
        load_session(pickle.dumps("not a session"), _config(config_dir))


def test_an_unknown_reference_is_refused(config_dir: Path) -> None:
    class Other(pickle.Pickler):
        def persistent_id(self, obj: object) -> str | None:
            return "something-else" if isinstance(obj, SessionSettings) else None

    buffer = io.BytesIO()
    Other(buffer).dump(_session(_config(config_dir)))
    with pytest.raises(pickle.UnpicklingError, match="unknown reference"):
        load_session(buffer.getvalue(), _config(config_dir))


def test_a_vhost_config_travels_by_reference_too(config_dir: Path) -> None:
    extra = "[vhost:b.example]\nipv4-network = 10.8.0.0/24\n"
    sender, receiver = _config(config_dir, extra), _config(config_dir, extra)
    (vhost,) = sender.vhosts
    payload = dump_session(_session(vhost), sender)
    session = load_session(payload, receiver)
    assert _settings(session).config is receiver.vhosts[0]
    assert _settings(session).config.ipv4_network == ipaddress.IPv4Network("10.8.0.0/24")
    assert len(payload) * 2 < len(pickle.dumps(_session(vhost)))
    # A receiver without that vhost (a reload removed it) refuses the record.
    with pytest.raises(pickle.UnpicklingError, match=r"vhost:b\.example"):
        load_session(payload, _config(config_dir))


# sec-mod's session database: the same references (ConfigReferences, the store's codec) ---------


def test_the_session_database_keeps_the_config_by_reference(
    config_dir: Path, tmp_path: Path
) -> None:
    """A restart's store reads its sessions back with the new run's configuration; a per-user
    configuration, written whole, comes back as it was."""
    from ocgate.session import SqliteSessionStore

    before = _config(config_dir)
    own = dataclasses.replace(before, dpd=17)
    references = ConfigReferences(before)
    path = tmp_path / "sessions.sqlite"
    store = SqliteSessionStore(path, now=0.0, codec=references)
    _cookie, common = store.create(username="alice", groups=(), group=None, now=0.0,
                                   user_agent=None, remote_addr=None, cookie_timeout=300,
                                   session_timeout=None)  # fmt: skip
    common.extra["settings"] = SessionSettings(config=before, hostname="laptop")
    store.save(common)
    _cookie, special = store.create(username="bob", groups=(), group=None, now=0.0,
                                    user_agent=None, remote_addr=None, cookie_timeout=300,
                                    session_timeout=None)  # fmt: skip
    special.extra["settings"] = SessionSettings(config=own)
    store.save(special)
    row = references.dumps(common.extra)
    assert len(row) * 4 < len(pickle.dumps(common.extra))
    store.close()

    after = _config(config_dir)
    restored = SqliteSessionStore(path, now=1.0, codec=ConfigReferences(after))
    try:
        assert _settings(restored.by_sid(common.sid)).config is after
        assert _settings(restored.by_sid(common.sid)).hostname == "laptop"
        assert _settings(restored.by_sid(special.sid)).config == own
        assert _settings(restored.by_sid(special.sid)).config is not after
    finally:
        restored.close()


def test_a_stored_session_of_a_vhost_that_is_gone_is_dropped(
    config_dir: Path, tmp_path: Path
) -> None:
    from ocgate.session import SqliteSessionStore

    before = _config(config_dir, "[vhost:b.example]\nipv4-network = 10.8.0.0/24\n")
    path = tmp_path / "sessions.sqlite"
    store = SqliteSessionStore(path, now=0.0, codec=ConfigReferences(before))
    _cookie, session = store.create(username="alice", groups=(), group=None, now=0.0,
                                    user_agent=None, remote_addr=None, cookie_timeout=300,
                                    session_timeout=None)  # fmt: skip
    session.extra["settings"] = SessionSettings(config=before.vhosts[0])
    store.save(session)
    store.close()
    restored = SqliteSessionStore(path, now=1.0, codec=ConfigReferences(_config(config_dir)))
    try:
        assert len(restored) == 0  # Dropped with a warning: its user logs in again.
    finally:
        restored.close()
