"""Address pools: IPv4 addresses and IPv6 addresses or subnets leased to VPN sessions.

Theory of operation
-------------------
A pool is a range of *slots* numbered ``0 .. capacity-1``; slot ``i`` maps to an address (or
subnet) by integer arithmetic, and the pool keeps only the set of used slot numbers. Nothing
proportional to the size of the network is ever built, so a ``/8`` or an IPv6 ``/48`` costs as much
as a ``/24``.

Rules (ocserv-compatibility §4.6, after ocserv ``src/ip-lease.c``):

* The server's tunnel-side address is ``network + 1`` and is never leased; neither is the network
  address, nor (IPv4) the broadcast address.
* IPv6 pools hand out ``/subnet_prefix`` subnets; the client's address is the first address of its
  subnet. With ``subnet_prefix == 128`` each lease is a single address. The subnet holding the
  server's address is never leased.
* ``allocate(key, prefer=...)`` honours ``prefer`` (the address a reconnecting client asks for, or a
  session's previous lease) when it is inside the pool and free. Otherwise the search starts at a
  slot derived from the SHA-256 of ``key`` (the username) with ``predictable=True`` so a user tends
  to get the same address every time, or at a random slot otherwise, and probes linearly (with
  wrap-around) for a free slot. Because the used count is checked first, the probe ends after at
  most ``in_use + 1`` steps; an exhausted pool raises :class:`~ocgate.errors.ResourceError`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from ocgate.errors import ConfigError, ResourceError

__all__ = ["Ipv4Pool", "Ipv6Pool"]

RandomBytes = Callable[[int], bytes]


class _Slots:
    """The used/free bookkeeping shared by both pools: a set of used slot numbers."""

    __slots__ = ("_cursor", "_predictable", "_random_bytes", "_used", "capacity")

    def __init__(self, capacity: int, *, predictable: bool, random_bytes: RandomBytes) -> None:
        self.capacity = capacity
        self._predictable = predictable
        self._random_bytes = random_bytes
        self._used: set[int] = set()
        self._cursor = 0

    def __len__(self) -> int:
        return len(self._used)

    def __contains__(self, slot: int) -> bool:
        return slot in self._used

    def _start(self, key: str) -> int:
        if self._predictable:
            seed = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        else:
            # Eight spare bytes keep the modulo bias negligible for any capacity.
            seed = self._random_bytes((self.capacity.bit_length() + 7) // 8 + 8)
        return int.from_bytes(seed, "big") % self.capacity

    def take(self, key: str, prefer: int | None) -> int:
        """Mark a free slot used and return it (``prefer`` first if it is free)."""
        if prefer is not None and 0 <= prefer < self.capacity and prefer not in self._used:
            self._used.add(prefer)
            return prefer
        if len(self._used) >= self.capacity:
            raise ResourceError(f"address pool exhausted ({self.capacity} leases in use)")
        slot = self._start(key)
        if slot in self._used:
            # Linear probing from the start slot would cluster (every session of one user, and
            # every key hashing near a run of leases, walks the whole run); a cursor that moves on
            # from the last slot taken this way keeps a busy pool's search short.
            slot = self._cursor
            while slot in self._used:
                slot = slot + 1 if slot + 1 < self.capacity else 0
            self._cursor = slot + 1 if slot + 1 < self.capacity else 0
        self._used.add(slot)
        return slot

    def give_back(self, slot: int) -> None:
        self._used.discard(slot)


class Ipv4Pool:
    """IPv4 addresses for clients out of ``network``; the server end is ``network + 1``.

    :param network: the pool (``ipv4-network``); at most a ``/30`` (one client address).
    :param predictable: ``predictable-ips``: start the search at a hash of the key (the username).
    :param random_bytes: randomness for the start slot when not predictable.
    :raises ConfigError: the network leaves no client address.
    """

    __slots__ = ("_first", "_slots", "network", "server_address")

    def __init__(
        self,
        network: IPv4Network,
        *,
        predictable: bool,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> None:
        if network.prefixlen > 30:
            raise ConfigError(
                f"{network} leaves no address for clients",
                key="ipv4-network",
                expected="/30 or larger",
            )
        self.network = network
        self.server_address = network.network_address + 1
        # Clients get network+2 .. broadcast-1.
        self._first = int(network.network_address) + 2
        self._slots = _Slots(
            network.num_addresses - 3, predictable=predictable, random_bytes=random_bytes
        )

    def __repr__(self) -> str:
        return f"Ipv4Pool({self.network}, in_use={self.in_use}/{self.capacity})"

    @property
    def capacity(self) -> int:
        """How many client addresses the pool has."""
        return self._slots.capacity

    @property
    def in_use(self) -> int:
        """How many addresses are leased now."""
        return len(self._slots)

    def _slot(self, addr: IPv4Address) -> int | None:
        slot = int(addr) - self._first
        return slot if 0 <= slot < self._slots.capacity else None

    def owns(self, addr: IPv4Address) -> bool:
        """Whether ``addr`` is a client address of this pool (leased or not)."""
        return self._slot(addr) is not None

    def __contains__(self, addr: object) -> bool:
        """Whether ``addr`` is leased now."""
        if not isinstance(addr, IPv4Address):
            return False
        slot = self._slot(addr)
        return slot is not None and slot in self._slots

    def allocate(self, key: str, *, prefer: IPv4Address | None = None) -> IPv4Address:
        """Lease an address.

        :param key: the username; seeds the search with ``predictable-ips``.
        :param prefer: an address to give if it is a free client address of this pool.
        :raises ResourceError: every address is leased.
        """
        prefer_slot = self._slot(prefer) if prefer is not None else None
        return IPv4Address(self._first + self._slots.take(key, prefer_slot))

    def release(self, addr: IPv4Address) -> None:
        """Return a leased address; releasing an address that is not leased does nothing."""
        slot = self._slot(addr)
        if slot is not None:
            self._slots.give_back(slot)


class Ipv6Pool:
    """IPv6 leases out of ``network``: ``/subnet_prefix`` subnets, or single addresses with 128.

    The server end is ``network + 1``. A lease is an :class:`~ipaddress.IPv6Network` whose first
    address is the client's address (``X-CSTP-Address-IP6: <addr>/<subnet_prefix>``).

    :param network: the pool (``ipv6-network``).
    :param subnet_prefix: ``ipv6-subnet-prefix`` (128 = one address per client).
    :param predictable: ``predictable-ips``: start the search at a hash of the key (the username).
    :param random_bytes: randomness for the start slot when not predictable.
    :raises ConfigError: the prefixes leave no lease for clients.
    """

    __slots__ = ("_first", "_slots", "_step", "network", "server_address", "subnet_prefix")

    def __init__(
        self,
        network: IPv6Network,
        subnet_prefix: int = 128,
        *,
        predictable: bool,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> None:
        if not network.prefixlen < subnet_prefix <= 128 or network.prefixlen > 126:
            raise ConfigError(
                f"{network} with subnet prefix {subnet_prefix} leaves nothing for clients",
                key="ipv6-subnet-prefix",
                expected=f"{network.prefixlen + 1}..128 and an ipv6-network of /126 or larger",
            )
        self.network = network
        self.subnet_prefix = subnet_prefix
        self.server_address = network.network_address + 1
        base = int(network.network_address)
        if subnet_prefix == 128:
            # Single addresses network+2 .. last (IPv6 has no broadcast address).
            self._step = 1
            self._first = base + 2
            capacity = network.num_addresses - 2
        else:
            # Subnet 0 holds the network and server addresses; clients get subnets 1 .. n-1.
            self._step = 1 << (128 - subnet_prefix)
            self._first = base + self._step
            capacity = (1 << (subnet_prefix - network.prefixlen)) - 1
        self._slots = _Slots(capacity, predictable=predictable, random_bytes=random_bytes)

    def __repr__(self) -> str:
        return (
            f"Ipv6Pool({self.network}, subnet_prefix={self.subnet_prefix}, "
            f"in_use={self.in_use}/{self.capacity})"
        )

    @property
    def capacity(self) -> int:
        """How many leases the pool has."""
        return self._slots.capacity

    @property
    def in_use(self) -> int:
        """How many leases are given out now."""
        return len(self._slots)

    def _slot(self, lease: IPv6Network | IPv6Address) -> int | None:
        if isinstance(lease, IPv6Network):
            if lease.prefixlen != self.subnet_prefix:
                return None
            lease = lease.network_address
        offset = int(lease) - self._first
        if offset < 0:
            return None
        slot = offset // self._step
        return slot if slot < self._slots.capacity else None

    def _lease(self, slot: int) -> IPv6Network:
        return IPv6Network((self._first + slot * self._step, self.subnet_prefix))

    def owns(self, lease: IPv6Network | IPv6Address) -> bool:
        """Whether ``lease`` (a lease, or an address inside one) belongs to this pool."""
        return self._slot(lease) is not None

    def __contains__(self, lease: object) -> bool:
        """Whether ``lease`` (a lease, or an address inside one) is given out now."""
        if not isinstance(lease, IPv6Network | IPv6Address):
            return False
        slot = self._slot(lease)
        return slot is not None and slot in self._slots

    def allocate(self, key: str, *, prefer: IPv6Network | IPv6Address | None = None) -> IPv6Network:
        """Lease an address or subnet.

        :param key: the username; seeds the search with ``predictable-ips``.
        :param prefer: a lease (or an address inside one) to give if it is free and in this pool.
        :raises ResourceError: every lease is given out.
        """
        prefer_slot = self._slot(prefer) if prefer is not None else None
        return self._lease(self._slots.take(key, prefer_slot))

    def release(self, lease: IPv6Network | IPv6Address) -> None:
        """Return a lease; releasing one that is not given out does nothing."""
        slot = self._slot(lease)
        if slot is not None:
            self._slots.give_back(slot)
