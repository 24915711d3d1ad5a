"""One client TCP connection: TLS, then the HTTP front door, then (after CONNECT) a tunnel.

This adapter makes no protocol decisions: it feeds bytes to the TLS endpoint, plaintext to the front
door or the tunnel, hands requests to the login dialog or the gateway's CONNECT handler, and writes
what the cores produce. Every error a peer can cause is answered by the core that detected it and
logged once here; nothing a peer sends raises out of ``data_received``.

Behind a balancer (``listen-proxy-proto``, the supervisor marks the connection ``proxied``) the
first bytes are a PROXY protocol header, read by :class:`ocgate.proxyproto.ProxyHeaderReader`
before any TLS. A connection without a valid header within its time is closed; a LOCAL one (a
health check) too, as ocserv does. Otherwise the header's client address becomes ``remote`` (and
its destination ``local``) for everything after: the supervisor's accept gate judges it (reading
pauses until the verdict; the bytes after the header wait for TLS), then logs, logins, scripts,
occtl and RADIUS all see it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ocgate.http import (
    CamouflageGate,
    ConnectionClosed,
    FrontDoor,
    HttpLimits,
    ProtocolViolation,
    Request,
    Response,
    TimedOut,
    with_headers,
)
from ocgate.proxyproto import Command, HeaderRefused, ProxyHeaderReader
from ocgate.tls import TlsEndpoint, TlsFailure

if TYPE_CHECKING:
    from ocgate.config import Config
    from ocgate.daemon._tunnel import Tunnel
    from ocgate.daemon._worker import Worker

__all__ = ["ClientConnection"]

log = logging.getLogger("ocgate.conn")


class ClientConnection(asyncio.Protocol):
    """asyncio protocol for one TCP connection on the TLS port."""

    def __init__(self, gateway: Worker, gate_token: int = 0, *, proxied: bool = False) -> None:
        self._gateway = gateway
        self.gate_token = gate_token
        """The supervisor's name for this connection until it reaches a tunnel or closes."""
        self.conn_id = gateway.next_conn_id()
        self.asked_auth = False
        self._loop = asyncio.get_running_loop()
        self._proxy = ProxyHeaderReader(now=self._loop.time()) if proxied else None
        """Reads the PROXY protocol header first (``listen-proxy-proto``); ``None`` after it."""
        self._proxy_timer: asyncio.TimerHandle | None = None
        self._held: bytearray | None = None
        """The client's bytes after the header while the accept gate judges its address."""
        self._transport: asyncio.Transport | None = None
        self._tls = TlsEndpoint(gateway.tls_context)
        config = gateway.config
        self._tls.rekey_interval = config.rekey_time / 2  # ocserv: sooner is refused.
        self._door: FrontDoor | None = FrontDoor(
            limits=HttpLimits(auth_timeout=float(config.auth_timeout)), now=self._loop.time()
        )
        """The HTTP phase; ``None`` once the connection carries a tunnel (its parser state goes:
        about 2 KB of each of thousands of idle tunnels)."""
        self.camouflage: CamouflageGate | None = None
        """Hides the VPN from requests without the secret (``camouflage = true``)."""
        if config.camouflage and config.camouflage_secret:
            self.camouflage = CamouflageGate(config.camouflage_secret, config.camouflage_realm)
        self._vhost_applied = False
        self._busy: asyncio.Task[None] | None = None
        self._connecting = False
        """A CONNECT is being prepared. Its task runs on when the client leaves, so that what it
        set up (the session's claim, a TUN device, the tunnel sec-mod took in) is given back:
        :meth:`Worker.handle_connect` looks at :meth:`closed_by_peer` between its steps."""
        self._timer: asyncio.TimerHandle | None = None
        self._received_any = False
        self.remote = "?"
        self.local = "?"
        self.tunnel: Tunnel | None = None

    # asyncio callbacks ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if peer else "?"
        sock = transport.get_extra_info("sockname")
        self.local = str(sock[0]) if sock else "?"
        # The supervisor's accept gate has admitted the address already (bans, caps, rate), or,
        # for a proxied connection, will judge the client the header names.
        self._gateway.connection_opened(self)
        self._arm_timer()
        if self._proxy is not None:
            when = self._proxy.get_timer()
            if when is not None:
                self._proxy_timer = self._loop.call_at(when, self._on_proxy_timer)

    def vhost(self) -> Config:
        """The configuration of the host the client asked for by TLS server name (SNI): a
        ``[vhost:NAME]``, or the default host (also for an unknown or missing name)."""
        return self._gateway.config.vhost(self._tls.server_name())

    def peer_chain(self) -> list[bytes]:
        """The client's certificate chain (DER, leaf first; empty if none)."""
        return list(self._tls.peer_certificates())

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._proxy_timer is not None:
            self._proxy_timer.cancel()
        if self._busy is not None and not self._connecting:
            self._busy.cancel()
        if self.tunnel is not None:
            self.tunnel.close("connection closed")
        elif not self._received_any:
            log.debug("event=probe remote=%s", self.remote)  # load-balancer health checks
        self._gateway.connection_closed(self)

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.pause_writing()

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.resume_writing()

    def data_received(self, data: bytes) -> None:
        start = time.monotonic_ns()
        self._received_any = True
        if self._held is not None:  # The accept gate is judging the client: TLS waits.
            self._held += data
            return
        if self._proxy is not None:
            self._proxy.receive_data(data, self._loop.time())
            self._proxy_event()
            return
        rekeys = self._tls.renegotiations
        try:
            plaintext = self._tls.receive_data(data, self._loop.time())
        except TlsFailure as exc:
            log.info("event=tls-failed remote=%s reason=%r", self.remote, str(exc))
            self._write_tls()
            self._close()
            return
        self._write_tls()
        if self._tls.renegotiations != rekeys:
            self._rekeyed()
        if self.tunnel is not None:
            if plaintext:
                self.tunnel.receive_cstp(plaintext)
                self._gateway.latency.sample(time.monotonic_ns() - start)
            if self._tls.closed:
                self.tunnel.close("client closed TLS")
            return
        if (plaintext or self._tls.closed) and self._door is not None:
            self._door.receive_data(plaintext if plaintext else b"", self._loop.time())
            self._drive()

    def eof_received(self) -> bool | None:
        return None

    # PROXY protocol (listen-proxy-proto) ----------------------------------------------------------

    def _proxy_event(self) -> None:
        """The header is read (or refused): the client's address, judged before any TLS."""
        assert self._proxy is not None
        event = self._proxy.next_event()
        if event is None:
            return
        self._proxy = None
        if self._proxy_timer is not None:
            self._proxy_timer.cancel()
            self._proxy_timer = None
        if isinstance(event, HeaderRefused):
            log.info("event=proxy-header-refused remote=%s reason=%r", self.remote, event.reason)
            self._drop()
            return
        header = event.header
        if header.command is Command.LOCAL:  # ocserv: a health check, closed at once.
            log.debug("event=proxy-health-check remote=%s", self.remote)
            self._drop()
            return
        if header.source is not None:
            log.debug("event=proxy-header balancer=%s remote=%s", self.remote, header.source)
            self.remote = header.source
        if header.destination is not None:
            self.local = header.destination
        self._held = bytearray(event.data)
        if self._transport is not None:
            self._transport.pause_reading()
        self._busy = self._loop.create_task(self._admit())

    async def _admit(self) -> None:
        """The accept gate's verdict on ``remote``; then TLS gets the bytes held meanwhile."""
        delay = await self._gateway.admit_client(self, self.remote)
        if delay is None:
            self._busy = None
            self._drop()
            return
        if delay > 0:
            await asyncio.sleep(delay)
        self._busy = None
        held, self._held = self._held, None
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.resume_reading()
        if held:
            self.data_received(bytes(held))

    def _on_proxy_timer(self) -> None:
        self._proxy_timer = None
        if self._proxy is None:
            return
        self._proxy.handle_timer(self._loop.time())
        self._proxy_event()
        when = self._proxy.get_timer() if self._proxy is not None else None
        if when is not None:  # The loop woke a little early: wait again.
            self._proxy_timer = self._loop.call_at(when, self._on_proxy_timer)

    def _drop(self) -> None:
        """Close before TLS started: there is nothing to say to the peer."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    # HTTP -----------------------------------------------------------------------------------------

    def _drive(self) -> None:
        """Handle the front door's next event unless a request is already being answered."""
        if self._busy is not None or self.tunnel is not None or self._door is None:
            return
        event = self._door.next_event()
        if event is None:
            self._arm_timer()
            return
        if isinstance(event, Request):
            self._busy = self._loop.create_task(self._answer(event))
        elif isinstance(event, ProtocolViolation):
            log.warning(
                "event=bad-http remote=%s status=%d reason=%r",
                self.remote,
                event.status_hint,
                event.message,
            )
            self._send_plain(self._door.data_to_send())
            self._close()
        elif isinstance(event, TimedOut):
            log.info("event=auth-timeout remote=%s", self.remote)
            self._close()
        elif isinstance(event, ConnectionClosed):
            self._close()

    async def _answer(self, request: Request) -> None:
        if self._gateway.config.vhosts and not self._vhost_applied:
            # The TLS server name is known now: camouflage is the vhost's (ocserv: vhost scope).
            self._vhost_applied = True
            host = self.vhost()
            self.camouflage = (
                CamouflageGate(host.camouflage_secret, host.camouflage_realm)
                if host.camouflage and host.camouflage_secret
                else None
            )
        try:
            hidden = self.camouflage.check(request) if self.camouflage is not None else None
            if hidden is not None:
                log.info(
                    "event=camouflage remote=%s method=%s reason='no secret in the URL'",
                    self.remote,
                    request.method,
                )
                self._respond_bare(hidden)
            elif request.method == "CONNECT":
                self._connecting = True
                await self._gateway.handle_connect(self, request)
            else:
                self.respond(await self._gateway.login(self, request))
        except Exception:
            log.exception("event=internal-error remote=%s", self.remote)
            self.respond(Response(500, "Internal Server Error", (), b"", close=True))
        finally:
            self._busy = None
            self._connecting = False
        if self._transport is not None and not self._transport.is_closing():
            self._drive()

    def respond(self, response: Response) -> None:
        """Send the answer to the current request (closing afterwards if it says so), with the
        ``included-http-headers`` of the configuration."""
        self._respond_bare(with_headers(response, self.vhost().included_http_headers))

    def _respond_bare(self, response: Response) -> None:
        if self._door is None:  # Handed over for a tunnel: no HTTP answer is possible any more.
            if self.tunnel is None:  # and the tunnel never came up.
                self._close()
            return
        self._door.send_response(response)
        self._send_plain(self._door.data_to_send())
        if response.close:
            self._close()

    def _rekeyed(self) -> None:
        """A TLS renegotiation (``rekey-method = ssl``) completed on this connection."""
        if self.tunnel is not None:
            self.tunnel.tls_rekeyed()
        else:
            log.info("event=tls-rekey remote=%s", self.remote)

    @property
    def secure_renegotiation(self) -> bool:
        """The client's TLS hello offered RFC 5746 secure renegotiation."""
        return self._tls.secure_renegotiation

    def tls_finished(self) -> bytes:
        """The client's TLS ``Finished`` verify_data of this connection (STRAP's binding)."""
        return self._tls.peer_finished()

    def tls_exporter(self, label: bytes, length: int) -> bytes:
        """RFC 5705 keying material of this connection's TLS session (the PSK-DTLS key)."""
        return self._tls.export_keying_material(label, length)

    def tls_cipher_name(self) -> str:
        return self._tls.cipher_name()

    def closed_by_peer(self) -> bool:
        """The transport is gone (the client left while its CONNECT was being prepared)."""
        return self._transport is None or self._transport.is_closing()

    def take_over_for_tunnel(self) -> tuple[TlsEndpoint, asyncio.Transport, bytes]:
        """After ``200 CONNECTED``: the TLS endpoint, the transport and the bytes after CONNECT."""
        assert self._transport is not None
        assert self._door is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        initial = self._door.tunnel_established()
        self._door = None
        return self._tls, self._transport, initial

    # Plumbing -------------------------------------------------------------------------------------

    def _send_plain(self, data: bytes) -> None:
        if not data:
            return
        try:
            self._tls.send(data)
        except TlsFailure:
            self._close()
            return
        self._write_tls()

    def _write_tls(self) -> None:
        out = self._tls.data_to_send()
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(out)

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._tls.shutdown()
            self._write_tls()
            self._transport.close()

    def close(self) -> None:
        """Close the connection (server shutdown)."""
        if self.tunnel is not None:
            self.tunnel.close("server shutting down", notify=True)
        self._close()

    def _arm_timer(self) -> None:
        when = self._door.get_timer() if self._door is not None else None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None and self.tunnel is None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._door is not None:
            self._door.handle_timer(self._loop.time())
            self._drive()
