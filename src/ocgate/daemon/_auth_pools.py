"""The address pools of the authentication service (:class:`~ocgate.daemon._auth.AuthService`).

:class:`AddressPools` owns every pool sec-mod leases addresses from, and nothing else:

* the default host's IPv4 and IPv6 pools (``ipv4-network``/``ipv6-network``);
* one pool per network of the virtual hosts (``[vhost:NAME]``): a vhost with the top level's
  network shares its pool, and vhosts with one network share one pool;
* the pools of per-user and per-group networks (``ipv4-network``/``ipv6-network`` in those files;
  ocserv ``src/ip-lease.c`` leases from the session's network): a session whose settings name a
  network other than its vhost's leases from a pool of that network, made at its first lease and
  dropped with its last one (at most :data:`MAX_SESSION_POOLS` at once). A network equal to a
  configured pool's shares that pool; one that overlaps another pool without being it is refused
  at CONNECT, so no address is leased twice;
* the pools a reload retired, until their sessions give their leases back.

After a restart the sessions' settings name their networks again, and their leases are reserved
in the pools made for them (:meth:`AddressPools.reserve`). Which host a session belongs to is the
service's to say: the pools ask it through ``host_of``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable

from ocgate.config import Config
from ocgate.errors import ResourceError
from ocgate.gateway import SessionSettings
from ocgate.session import Ipv4Pool, Ipv6Pool, Session

__all__ = ["MAX_SESSION_POOLS", "AddressPools"]

log = logging.getLogger("ocgate.secmod")

MAX_SESSION_POOLS = 256
"""Pools of per-user and per-group networks held at once; a session that needs another one is
refused (the files are the administrator's, but a typo per user must not grow state unbounded)."""

_Pool = Ipv4Pool | Ipv6Pool
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressPools:
    """The pools of the default host, of the vhosts, of per-user networks and those retired.

    :param host_of: the configuration of the host a session logged in to (its vhost, else the
        default host).
    """

    def __init__(self, host_of: Callable[[Session], Config]) -> None:
        self._host_of = host_of
        self.pool4: Ipv4Pool | None = None
        self.pool6: Ipv6Pool | None = None
        self._vhost_pools: dict[_Net, _Pool] = {}
        """The pools of vhosts whose network differs from the default host's, by network."""
        self.per_user: dict[_Net, _Pool] = {}
        """The pools of per-user and per-group networks, by network (while they hold leases)."""
        self._retired: list[_Pool] = []

    def load(self, config: Config) -> None:
        """Make the pools ``config`` names; a pool whose network stays keeps its leases."""
        if self.pool4 is None or config.ipv4_network != self.pool4.network:
            if self.pool4 is not None:
                self._retired.append(self.pool4)
            adopted4 = self._adopt(config.ipv4_network, config.ipv6_subnet_prefix)
            self.pool4 = (
                adopted4
                if isinstance(adopted4, Ipv4Pool)
                else Ipv4Pool(config.ipv4_network, predictable=config.predictable_ips)
                if config.ipv4_network is not None
                else None
            )
        if self.pool6 is None or config.ipv6_network != self.pool6.network:
            if self.pool6 is not None:
                self._retired.append(self.pool6)
            adopted6 = self._adopt(config.ipv6_network, config.ipv6_subnet_prefix)
            self.pool6 = (
                adopted6
                if isinstance(adopted6, Ipv6Pool)
                else Ipv6Pool(
                    config.ipv6_network,
                    config.ipv6_subnet_prefix,
                    predictable=config.predictable_ips,
                )
                if config.ipv6_network is not None
                else None
            )
        old, self._vhost_pools = self._vhost_pools, {}
        for vhost in config.vhosts:
            for network in (vhost.ipv4_network, vhost.ipv6_network):
                if network is None or network in (config.ipv4_network, config.ipv6_network):
                    continue
                if network in self._vhost_pools:
                    continue
                pool = old.pop(network, None) or self._adopt(network, vhost.ipv6_subnet_prefix)
                if pool is None:
                    pool = (
                        Ipv4Pool(network, predictable=vhost.predictable_ips)
                        if isinstance(network, ipaddress.IPv4Network)
                        else Ipv6Pool(
                            network, vhost.ipv6_subnet_prefix, predictable=vhost.predictable_ips
                        )
                    )
                self._vhost_pools[network] = pool
        self._retired.extend(old.values())

    def _adopt(self, network: _Net | None, subnet_prefix: int) -> _Pool | None:
        """A reload made ``network`` a configured pool: the per-user pool of that network (with
        its leases) becomes it, so one network keeps one pool."""
        pool = self.per_user.get(network) if network is not None else None
        if isinstance(pool, Ipv6Pool) and pool.subnet_prefix != subnet_prefix:
            return None
        if pool is not None:
            del self.per_user[pool.network]
        return pool

    def for_host(self, host: Config) -> tuple[Ipv4Pool | None, Ipv6Pool | None]:
        """The address pools of ``host``: the default host's, or its vhost's own (vhosts with
        the default host's network share its pool)."""
        pool4: Ipv4Pool | None = self.pool4
        pool6: Ipv6Pool | None = self.pool6
        if host.ipv4_network != (self.pool4.network if self.pool4 is not None else None):
            found4 = self._vhost_pools.get(host.ipv4_network) if host.ipv4_network else None
            pool4 = found4 if isinstance(found4, Ipv4Pool) else None
        if host.ipv6_network != (self.pool6.network if self.pool6 is not None else None):
            found6 = self._vhost_pools.get(host.ipv6_network) if host.ipv6_network else None
            pool6 = found6 if isinstance(found6, Ipv6Pool) else None
        return pool4, pool6

    def for_session(self, session: Session) -> tuple[Ipv4Pool | None, Ipv6Pool | None]:
        """The pools ``session`` leases from: its vhost's, or for a network of its own (a
        per-user or per-group ``ipv4-network``/``ipv6-network``) the pool of that network, made
        now if there is none (ocserv ``src/ip-lease.c``).

        :raises ResourceError: the session's network overlaps another pool without being it, or
            :data:`MAX_SESSION_POOLS` are in use.
        """
        host = self._host_of(session)
        pool4, pool6 = self.for_host(host)
        settings = session.extra.get("settings")
        if not isinstance(settings, SessionSettings):
            return pool4, pool6
        own = settings.config
        if own.ipv4_network is not None and own.ipv4_network != host.ipv4_network:
            found4 = self._pool_of(own.ipv4_network, own, session)
            pool4 = found4 if isinstance(found4, Ipv4Pool) else None
        if own.ipv6_network is not None and own.ipv6_network != host.ipv6_network:
            found6 = self._pool_of(own.ipv6_network, own, session)
            pool6 = found6 if isinstance(found6, Ipv6Pool) else None
        return pool4, pool6

    def live(self) -> list[_Pool]:
        """Every pool that may hold a lease: configured, per-user and retired."""
        pools = [self.pool4, self.pool6, *self._vhost_pools.values(), *self.per_user.values()]
        return [p for p in (*pools, *self._retired) if p is not None]

    def _pool_of(self, network: _Net, own: Config, session: Session) -> _Pool:
        """The pool of a session's own ``network``: an existing pool of that network, else a
        new one (see :meth:`for_session`)."""
        subnet = own.ipv6_subnet_prefix
        for pool in self.live():
            if pool.network != network or pool in self._retired:
                continue
            if isinstance(pool, Ipv6Pool) and pool.subnet_prefix != subnet:
                self._refuse(session, network, f"its pool leases /{pool.subnet_prefix}")
            return pool
        for pool in self.live():
            busy = pool not in self._retired or pool.in_use
            if busy and pool.network.version == network.version and pool.network.overlaps(network):
                self._refuse(session, network, f"it overlaps the pool {pool.network}")
        if len(self.per_user) >= MAX_SESSION_POOLS:
            self._refuse(session, network, f"{MAX_SESSION_POOLS} per-user pools in use")
        created: _Pool = (
            Ipv4Pool(network, predictable=own.predictable_ips)
            if isinstance(network, ipaddress.IPv4Network)
            else Ipv6Pool(network, subnet, predictable=own.predictable_ips)
        )
        self.per_user[network] = created
        log.info("event=pool-created network=%s user=%r session=%s pools=%d", network,
                 session.username, session.sid, len(self.per_user))  # fmt: skip
        return created

    def _refuse(self, session: Session, network: _Net, why: str) -> None:
        log.warning("event=pool-refused network=%s user=%r session=%s reason=%r",
                    network, session.username, session.sid, why)  # fmt: skip
        raise ResourceError(f"no pool for {network}: {why}")

    def drop_empty(self) -> None:
        """Drop the per-user pools and the retired pools that hold no lease any more (a retired
        pool is kept only so that its leases are not given out twice)."""
        for network, pool in list(self.per_user.items()):
            if not pool.in_use:
                del self.per_user[network]
                log.info("event=pool-dropped network=%s", network)
        self._retired = [pool for pool in self._retired if pool.in_use]

    def release(self, session: Session) -> None:
        """Give ``session``'s addresses back to the pools holding them (and drop the per-user
        pools that empties)."""
        for lease in (session.ipv4, session.ipv6):
            # The pool holding it: the configured ones, the per-user ones, those a reload retired.
            for pool in self.live() if lease is not None else ():
                same_family = isinstance(pool, Ipv4Pool) == isinstance(lease, ipaddress.IPv4Address)
                if same_family and pool.owns(lease) and lease in pool:  # type: ignore[arg-type]
                    pool.release(lease)  # type: ignore[arg-type]
                    break
        session.ipv4 = None
        session.ipv6 = None
        self.drop_empty()

    def reserve(self, sessions: Iterable[Session], save: Callable[[Session], None]) -> None:
        """Reserve again, in the vhost and per-user pools, the leases of ``sessions`` read back
        from the durable store (the store reserved those of the default host's pools itself).

        A lease another session holds already is cleared and the session passed to ``save``.
        """
        for session in sessions:  # Vhost and per-user pools: the store knows one.
            addr4, addr6 = session.ipv4, session.ipv6
            if addr4 is None and addr6 is None:
                continue
            try:
                pool4, pool6 = self.for_session(session)
            except ResourceError:  # Logged: a reload made its network overlap another pool.
                pool4 = pool6 = None
            if pool4 not in (None, self.pool4) and addr4:
                if _free_in(pool4, addr4):
                    pool4.allocate(session.username, prefer=addr4)
                elif pool4.owns(addr4):  # An older session holds it.
                    session.ipv4 = None
            if pool6 not in (None, self.pool6) and addr6:
                if _free_in(pool6, addr6):
                    pool6.allocate(session.username, prefer=addr6)
                elif pool6.owns(addr6):
                    session.ipv6 = None
            if (session.ipv4, session.ipv6) != (addr4, addr6):
                log.warning("event=lease-lost session=%s user=%r", session.sid, session.username)
                save(session)
        self.drop_empty()


def _free_in(
    pool: Ipv4Pool | Ipv6Pool, address: ipaddress.IPv4Address | ipaddress.IPv6Network
) -> bool:
    """Whether ``address`` is a lease of ``pool`` that nobody holds yet."""
    return pool.owns(address) and address not in pool  # type: ignore[arg-type]
