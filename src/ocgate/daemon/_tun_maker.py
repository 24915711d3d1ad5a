"""The supervisor's TUN devices: a worker asks for one, the supervisor checks and creates it.

Theory of operation: a worker that brings a tunnel up sends :class:`~ocgate.ipc.messages.OpenTun`
with the session's leases, its own pool networks (per-user or per-group ``ipv4-network`` /
``ipv6-network``) and its ``iroute`` networks. The worker is not trusted, so every address is
checked before the kernel sees it: the peer addresses are unicast, a session's own network holds
the lease and leaves the network's first address to the gateway, and an iroute is a network
behind a client (no default route, nothing overlapping a pool). :class:`TunMaker` then creates the
device, gives it its addresses and MTU over netlink (:mod:`ocgate.tun`), routes the iroutes
through it (ocserv's ``route-add-cmd``) and answers with the device's descriptor (``SCM_RIGHTS``).

Creating a device takes the kernel's RTNL lock, which a device being removed elsewhere (a worker
closing a tunnel) can hold for milliseconds: the work runs on a thread, never on the
supervisor's event loop. The device goes away with the worker's last descriptor, and its routes
with it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from collections.abc import Sequence

from ocgate.config import Config
from ocgate.daemon._setup import server_addresses
from ocgate.ipc import messages as m
from ocgate.ipc._channel import Outgoing
from ocgate.tun import TunDevice, add_device_routes, configure_tun, open_tun

__all__ = ["TunMaker", "checked_iroute", "own_network"]

log = logging.getLogger("ocgate")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Local = tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]


class TunMaker:
    """Creates the TUN devices the workers ask for (:meth:`open`); :meth:`configure` on reload."""

    def __init__(self, config: Config) -> None:
        self.configure(config)
        # iroute network -> the (peer4, peer6) of the tunnel it was last routed to: a new device
        # with the same leases is the same session reconnecting and takes the route over.
        self._iroute_owners: dict[_Network, tuple[str | None, str | None]] = {}
        self._iroute_lock = threading.Lock()

    def configure(self, config: Config) -> None:
        self.config = config
        self.server4, self.server6 = server_addresses(config)

    async def open(self, msg: m.OpenTun) -> Outgoing:
        """A configured device for ``msg``, or :class:`~ocgate.ipc.messages.Failed` saying why."""
        try:
            peer4 = ipaddress.IPv4Address(msg.peer4) if msg.peer4 else None
            peer6 = ipaddress.IPv6Network(msg.peer6) if msg.peer6 else None
        except ValueError as exc:
            return m.Failed(message=f"bad address: {exc}")
        for address in (peer4, peer6.network_address if peer6 else None):
            if address is not None and (address.is_loopback or address.is_multicast
                                        or address.is_unspecified):  # fmt: skip
                return m.Failed(message=f"refused peer address {address}")
        try:
            own4 = own_network(msg.network4, peer4, 4)
            own6 = own_network(msg.network6, peer6, 6)
        except ValueError as exc:
            return m.Failed(message=f"refused network: {exc}")
        try:
            pools = [n for h in self.config.hosts() for n in (h.ipv4_network, h.ipv6_network)]
            iroutes = [checked_iroute(text, [*pools, own4, own6]) for text in msg.iroutes]
        except ValueError as exc:
            return m.Failed(message=f"refused iroute: {exc}")
        try:
            host = self.config.vhost(msg.vhost) if msg.vhost else self.config
            local = server_addresses(host) if host is not self.config else None
            if own4 is not None or own6 is not None:  # A per-user or per-group pool's first host.
                base4, base6 = local if local is not None else (self.server4, self.server6)
                local = (
                    own4.network_address + 1 if isinstance(own4, ipaddress.IPv4Network) else base4,
                    own6.network_address + 1 if isinstance(own6, ipaddress.IPv6Network) else base6,
                )
            tun = await asyncio.to_thread(self.create, msg.mtu, peer4, peer6, iroutes, local)
        except OSError as exc:
            return m.Failed(message=f"cannot create a TUN device: {exc}")
        return m.TunOpened(name=tun.name), [tun.fd]

    def create(
        self,
        mtu: int,
        peer4: ipaddress.IPv4Address | None,
        peer6: ipaddress.IPv6Network | None,
        iroutes: Sequence[_Network] = (),
        local: _Local | None = None,
    ) -> TunDevice:
        """A configured TUN device; ``local``: a vhost's own tunnel addresses (its pools').

        Blocks on the kernel (call it on a thread).
        """
        server4, server6 = local if local is not None else (self.server4, self.server6)
        tun = open_tun(self.config.device)
        try:
            configure_tun(
                tun.name,
                mtu=mtu,
                local4=server4 if peer4 is not None else None,
                peer4=peer4,
                local6=server6 if peer6 is not None else None,
                peer6=peer6,
            )
            # The kernel drops the routes with the link when the tunnel closes its descriptor.
            self._route_iroutes(tun.name, (str(peer4), str(peer6)), iroutes)
        except BaseException:
            tun.close()
            raise
        return tun

    def _route_iroutes(
        self, device: str, owner: tuple[str | None, str | None], iroutes: Sequence[_Network]
    ) -> None:
        """Route ``iroutes`` through ``device``. A network last routed to a tunnel with the same
        leases (``owner``) belongs to the same session, whose older device may still be open: it
        is taken over; any other existing route is left alone and the refusal logged."""
        with self._iroute_lock:
            mine = {n for n in iroutes if self._iroute_owners.get(n) == owner}
            failed = add_device_routes(device, iroutes, replace=mine)
            for network, exc in failed:
                log.warning("event=iroute-failed device=%s route=%s reason=%r",
                            device, network, exc.strerror)  # fmt: skip
            refused = {network for network, _ in failed}
            for network in iroutes:
                if network not in refused:
                    self._iroute_owners[network] = owner


def own_network(
    text: str | None,
    peer: ipaddress.IPv4Address | ipaddress.IPv6Network | None,
    version: int,
) -> _Network | None:
    """A session's own pool network as a worker names it (per-user or per-group
    ``ipv4-network``/``ipv6-network``); its first address becomes the device's local end.

    The worker is not trusted, but it chooses the peer address already: the network must hold
    that lease and be a unicast network (not loopback, link-local, multicast or unspecified).

    :raises ValueError: it is not such a network.
    """
    if text is None:
        return None
    network = ipaddress.ip_network(text, strict=True)
    if network.version != version or network.prefixlen == 0 or network.is_loopback:
        raise ValueError(f"{network} is not an address pool")
    if network.is_link_local or network.is_multicast or network.is_unspecified:
        raise ValueError(f"{network} is not an address pool")
    if isinstance(peer, ipaddress.IPv4Address) and isinstance(network, ipaddress.IPv4Network):
        inside = peer in network and peer != network.network_address + 1
    elif isinstance(peer, ipaddress.IPv6Network) and isinstance(network, ipaddress.IPv6Network):
        inside = peer.subnet_of(network) and network.network_address + 1 not in peer
    else:
        inside = False
    if not inside:
        raise ValueError(f"the lease is not a client lease of {network}")
    return network


def checked_iroute(text: str, pools: Sequence[_Network | None]) -> _Network:
    """A worker's iroute, checked before the kernel routes it (the worker is not trusted).

    Only a network behind a client qualifies: never a default route, loopback, link-local,
    multicast, or anything overlapping the gateway's own address pools.

    :raises ValueError: it is not such a network.
    """
    network = ipaddress.ip_network(text, strict=True)
    if network.prefixlen == 0 or network.is_loopback or network.is_link_local:
        raise ValueError(f"{network} is not a network behind a client")
    if network.is_multicast or network.is_unspecified:
        raise ValueError(f"{network} is not a network behind a client")
    for pool in pools:
        if pool is not None and pool.version == network.version and pool.overlaps(network):
            raise ValueError(f"{network} overlaps the address pool {pool}")
    return network
