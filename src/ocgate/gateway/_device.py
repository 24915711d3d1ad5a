"""The client's device, as its login describes it (issue 13 §7).

Two sources, both claims of the client: Cisco Secure Client's ``<device-id>`` attributes in the
XML init (:class:`~ocgate.aggauth.DeviceId`), and the ``X-AnyConnect-Identifier-*`` headers that
Cisco's mobile clients and openconnect's mobile ``--os`` values send. The XML wins; the headers
fill what it left empty. The result is kept with the session (``session.extra["device"]``) and
shown by ``ctl show user``, given to the connect/disconnect scripts and recorded with the NVM
lease, so an endpoint's flows can be matched to the machine that logged in.
"""

from __future__ import annotations

import dataclasses

from ocgate.aggauth import DeviceId, device_claim
from ocgate.http import Request

__all__ = ["device_from_login"]

_HEADERS = (
    ("platform", "x-anyconnect-identifier-platform"),
    ("platform_version", "x-anyconnect-identifier-platformversion"),
    ("device_type", "x-anyconnect-identifier-devicetype"),
    ("unique_id", "x-anyconnect-identifier-device-uniqueid"),
)


def device_from_login(xml: DeviceId | None, request: Request) -> DeviceId | None:
    """The device of a login: its XML ``<device-id>``, gaps filled from ``request``'s headers.

    ``None`` when the client said nothing of its device.
    """
    device = xml if xml is not None else DeviceId()
    fills = {
        field: device_claim(request.header(header))
        for field, header in _HEADERS
        if not getattr(device, field)
    }
    device = dataclasses.replace(device, **{k: v for k, v in fills.items() if v})
    return None if device == DeviceId() else device
