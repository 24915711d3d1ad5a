"""TUN devices for client tunnels (Linux): create, address, and remove them.

This is an adapter package (real I/O); the pure parts of ocgate never import it.
"""

from __future__ import annotations

from ocgate.tun._dev import TunDevice, configure_tun, open_tun, remove_tun
from ocgate.tun._route import add_device_routes

__all__ = ["TunDevice", "add_device_routes", "configure_tun", "open_tun", "remove_tun"]
