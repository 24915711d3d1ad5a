"""Every message that crosses a process boundary, and who may send it.

Each class is a msgspec Struct, tagged with its class name. A receiving end decodes with the union
of what it accepts (``*_ACCEPTS`` below), so a message from a less privileged process is
type-checked and size-bounded before any handler sees it. Three rules keep the privileged side
small:

* Upstream (worker → auth service, worker → supervisor, auth service → supervisor) carries only
  plain typed fields, never pickles.
* Downstream (supervisor → child, auth service → worker) may carry ``payload`` pickles (the whole
  configuration, a session with its settings): the receiver is the less privileged process.
* Descriptors travel beside a message as ``SCM_RIGHTS`` (a TUN device, an accepted TCP connection,
  a connected UDP socket), never inside it.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ocgate.control import BanInfo, SessionInfo, UserInfo
from ocgate.http import Request

__all__ = [
    "AUTH_ACCEPTS",
    "AUTH_FROM_CONSOLE",
    "CONSOLE_ACCEPTS",
    "NVM_ACCEPTS",
    "NVM_FROM_CONSOLE",
    "SUPERVISOR_FROM_AUTH",
    "SUPERVISOR_FROM_CONSOLE",
    "SUPERVISOR_FROM_NVM",
    "SUPERVISOR_FROM_WORKER",
    "WORKER_ACCEPTS",
    "Failed",
    "Message",
    "Reply",
]

Host = Annotated[str, msgspec.Meta(max_length=64)]
Name = Annotated[str, msgspec.Meta(max_length=256)]
Text = Annotated[str, msgspec.Meta(max_length=4096)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Datagram = Annotated[bytes, msgspec.Meta(max_length=65535)]


class Message(msgspec.Struct, tag=True, kw_only=True):
    """Base of every message; ``rid`` > 0 marks a request, a reply echoes it."""

    rid: int = 0


class Reply(Message):
    """Base of every answer to a request."""


class Ok(Reply):
    found: bool = True


class Failed(Reply):
    message: Text = ""


# Set-up and life cycle (supervisor → every child) ------------------------------------------------


class Configure(Message):
    """The configuration (pickled ``ChildSetup``), at start and on every reload."""

    payload: bytes


class Stop(Message):
    """Leave: close tunnels (``notify``: tell the clients, who then exit) and exit."""

    notify: bool = False


class AttachWorker(Message):
    """To the auth service: the descriptor beside it is the channel to worker ``index``."""

    index: Count
    generation: Count


class NewConnection(Message):
    """To a worker: the TCP connection beside it, accepted by the supervisor.

    ``token`` names it to the accept gate until the worker sends :class:`ConnectionDone`.
    ``proxied``: it starts with a PROXY protocol header (``listen-proxy-proto`` when it was
    accepted), and the gate waits for :class:`RealAddress` to judge its source.
    """

    token: Count = 0
    proxied: bool = False


class MetricsConnection(Message):
    """To a worker: a connection on ``metrics-listen`` (``metrics``) or ``health-listen``, beside
    it, with the node's state at accept for ``GET /health`` (the supervisor's to decide)."""

    health: Literal["ready", "draining", "stopping"] = "ready"
    metrics: bool = True


class Drain(Message):
    """To every worker: the node drains until ``deadline`` (epoch seconds); refuse new logins and
    CONNECTs so that clients go to another node. Running tunnels keep serving until the
    supervisor stops the node at the deadline."""

    deadline: float


class Steered(Message):
    """To a worker: a ClientHello for one of its tunnels and a UDP socket to its sender."""

    host: Host
    port: Port
    data: Datagram


class CollectMetrics(Message):
    """Ask a child for its counters."""


class Sample(msgspec.Struct, array_like=True):
    name: Name
    labels: dict[Name, Name]
    value: float
    kind: Literal["counter", "gauge"] = "counter"


class Metrics(Reply):
    samples: list[Sample] = []
    help: dict[Name, Text] = {}


class UsersQuery(Message):
    """Ask a worker for the tunnels it serves."""


class Users(Reply):
    users: list[UserInfo] = []
    stats: dict[Name, float] = {}


class CloseTunnels(Message):
    """Disconnect (or terminate) these tunnel ids."""

    ids: list[int]
    terminate: bool = False


class CloseSession(Message):
    """To a worker, from the auth service: end the tunnel of ``sid`` (replaced, expired, ended)."""

    sid: Name
    reason: Text
    end_session: bool = False
    notify: bool = False


# Worker → supervisor -----------------------------------------------------------------------------


class OpenTun(Message):
    """Create and configure a TUN device; the reply carries its descriptor."""

    mtu: Annotated[int, msgspec.Meta(ge=576, le=65535)]
    peer4: Host | None = None
    peer6: Host | None = None
    iroutes: Annotated[list[Host], msgspec.Meta(max_length=1024)] = []
    """The session's ``iroute`` networks (CIDR): routed through the device while it exists."""
    vhost: Name = ""
    """The session's ``[vhost:NAME]`` (its pool's first address is the device's own); ``""``:
    the default host."""
    network4: Host | None = None
    network6: Host | None = None
    """The session's own pool network (CIDR; a per-user or per-group ``ipv4-network`` /
    ``ipv6-network``): its first address is the device's own, as ocserv's ``ip-lease.c``.
    ``None``: the vhost's pool."""


class TunOpened(Reply):
    name: Name


class RunScript(Message):
    kind: Literal["connect", "disconnect"]
    env: dict[
        Annotated[str, msgspec.Meta(max_length=64, pattern=r"^[A-Z][A-Z0-9_]*$")],
        Annotated[str, msgspec.Meta(max_length=65536)],
    ]


class ScriptDone(Reply):
    status: int


class PingAddress(Message):
    """From the auth service: does ``address`` answer a ping (``ping-leases``)? Reply: ``Ok``
    with ``found`` = it answered."""

    address: Host


class SteerDatagram(Message):
    """A ClientHello for another worker's tunnel (by the id's worker byte)."""

    owner: Count
    host: Host
    port: Port
    data: Datagram


class TunnelEvent(Message):
    """A tunnel came up or went down (``show events``, NVM lease history, statistics)."""

    kind: Literal["connect", "disconnect"]
    user: UserInfo
    reason: Text = ""


class Scrape(Message):
    """From worker 0: the metrics of every process, rendered."""


class ConnectionDone(Message):
    """The connection of ``token`` left the accept gate's count: tunnel up, or closed."""

    token: Count


class RealAddress(Message):
    """The proxied connection of ``token`` is from ``address`` (its PROXY protocol header, or the
    balancer's own address when the header names none): the accept gate judges that source.
    Reply: :class:`Admitted`, or :class:`Failed` (refused: the worker closes it)."""

    token: Count
    address: Host


class Admitted(Reply):
    """The source passed the gate; go on after ``delay`` seconds (``rate-limit-ms``)."""

    delay: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 0.0


# Supervisor ⇄ auth service (the accept gate) ------------------------------------------------------


class ConnectionPoints(Message):
    """To the auth service: connections were accepted from these addresses (ban points)."""

    addresses: Annotated[list[Host], msgspec.Meta(max_length=4096)]


class BanState(msgspec.Struct, kw_only=True):
    address: Host
    seconds: float
    """How much longer the ban lasts; 0 or less: lifted."""


class Bans(Message):
    """From the auth service: bans that changed (``replace``: the whole list, at its start)."""

    entries: Annotated[list[BanState], msgspec.Meta(max_length=65536)]
    replace: bool = False


class ScrapeText(Reply):
    text: str


# Worker → auth service ---------------------------------------------------------------------------


class LoginRequest(Message):
    """A pre-tunnel HTTP request of connection ``conn`` (GET/POST), for its login dialog."""

    conn: Count
    request: Request
    remote: Host
    local: Host
    peer_chain: Annotated[list[bytes], msgspec.Meta(max_length=16)] = []
    vhost: Name = ""
    """The ``[vhost:NAME]`` the connection's TLS server name chose; ``""``: the default host."""


class LoginResponse(Reply):
    status: int
    reason: Name
    headers: list[tuple[Name, Text]]
    body: bytes
    close: bool


class ConnectionGone(Message):
    conn: Count


class ClaimSession(Message):
    """CONNECT: the session of ``cookie``, with its leases (``X-CSTP-Address`` as a preference)."""

    cookie: Annotated[str, msgspec.Meta(max_length=64)]
    tunnel_id: Count
    prefer4: Host | None = None
    prefer6: Host | None = None
    want6: bool = True
    remote: Host = ""
    """The client's address (``deny-roaming`` compares it with the login's)."""
    peer_chain: Annotated[list[bytes], msgspec.Meta(max_length=16)] = []
    """The certificate chain this connection presented (a certificate session's check)."""
    vhost: Name = ""
    """The connection's ``[vhost:NAME]`` (SNI); a session is good only on its own vhost."""
    strap_finished: Annotated[bytes, msgspec.Meta(max_length=64)] = b""
    """The client's TLS ``Finished`` verify_data of this connection (STRAP's binding)."""
    strap_verify: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    """``X-AnyConnect-STRAP-Verify`` as sent (a longer one is not forwarded)."""
    strap_pubkey: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    """``X-AnyConnect-STRAP-Pubkey`` of the CONNECT: the client's next key."""


class SessionGranted(Reply):
    payload: bytes
    """The pickled :class:`~ocgate.session.Session`, settings included."""


class TunnelUp(Message):
    sid: Name
    tunnel_id: Count
    device: Name
    remote: Host
    local: Host
    user_agent: Text
    hostname: Name | None = None


class TunnelDown(Message):
    sid: Name
    tunnel_id: Count
    reason: Text
    end_session: bool
    rx_bytes: Count = 0
    tx_bytes: Count = 0
    rx_packets: Count = 0
    tx_packets: Count = 0


class TunnelCounters(msgspec.Struct, array_like=True):
    sid: Name
    rx_bytes: Count
    tx_bytes: Count
    rx_packets: Count
    tx_packets: Count


class CountersUpdate(Message):
    tunnels: list[TunnelCounters]


class EndSession(Message):
    sid: Name
    reason: Text


# Supervisor → auth service -----------------------------------------------------------------------


class SessionsQuery(Message):
    pass


class Sessions(Reply):
    sessions: list[SessionInfo] = []
    bans: list[BanInfo] = []
    stats: dict[Name, float] = {}
    remote_users: list[UserInfo] = []
    """With a shared session store: the tunnels of the other nodes (each names its node)."""


class Unban(Message):
    address: Host


class TerminateSession(Message):
    sid: Name


class TerminateUser(Message):
    """``ctl terminate user``: end the user's sessions on the other nodes of a shared store."""

    username: Name


class NodeUsers(Message):
    """This node's tunnels, for ``show users`` on the other nodes of a shared session store."""

    users: list[UserInfo] = []


# Supervisor → NVM --------------------------------------------------------------------------------


class LeaseEvent(Message):
    kind: Literal["start", "end"]
    username: Text
    session_id: Name
    address: Host | None
    when: float
    device_platform: Name = ""
    """What the login said of the machine (``ctl show user``'s Platform, Computer name and
    Unique ID), recorded with the lease."""
    device_name: Name = ""
    device_unique_id: Name = ""


# The web console (ocgate.console): it reads administrators' browsers, so it asks for everything.


class AttachConsole(Message):
    """supervisor → sec-mod / nvm: the console's end of a new channel travels beside it."""


class ControlLine(Message):
    """console → supervisor: one occtl request line (``ocgate.control``), answered by
    :class:`ControlAnswer`; ``stop``, ``drain`` and ``show events`` are refused."""

    line: Annotated[bytes, msgspec.Meta(max_length=8192)]


class ControlAnswer(Reply):
    line: bytes


class AdminLogin(Message):
    """console → sec-mod: an administrator's password and TOTP code, answered by
    :class:`AdminVerdict` or :class:`Failed`."""

    username: Name
    password: Text
    code: Annotated[str, msgspec.Meta(max_length=16)]
    source: Host

    def __repr__(self) -> str:
        return f"AdminLogin(username={self.username!r}, source={self.source!r})"


class AdminVerdict(Reply):
    username: Name
    role: Literal["admin", "readonly"]


class VpnUsersQuery(Message):
    """console → sec-mod: the VPN password file's users."""


class VpnUserRow(msgspec.Struct, array_like=True):
    username: Name
    groups: list[Name]
    locked: bool
    otp: bool


class VpnUsersList(Reply):
    editable: bool
    reason: Text
    otp_available: bool
    users: list[VpnUserRow]


class VpnUserEdit(Message):
    """console → sec-mod: one change of the VPN password or OTP file (``Ok``/``Failed``), or
    ``config``: the user's per-user file (``UserConfigText``)."""

    action: Literal["add", "password", "groups", "lock", "unlock", "delete", "otp-reset", "config"]
    username: Name
    password: Text = ""
    groups: Annotated[list[Name], msgspec.Meta(max_length=64)] = []

    def __repr__(self) -> str:
        return f"VpnUserEdit(action={self.action!r}, username={self.username!r})"


class UserConfigText(Reply):
    text: str


class OtpEnroll(Message):
    """console → sec-mod: a new TOTP secret for a VPN user (``OtpSecret``)."""

    username: Name


class OtpSecret(Reply):
    secret: Name
    uri: Text

    def __repr__(self) -> str:
        return "OtpSecret(<redacted>)"


class TelemetryQuery(Message):
    """console → nvm: ``GET /api/v1/{path}?{query}`` of the NVM API, run in the collector."""

    path: Name
    query: Text


class TelemetryAnswer(Reply):
    status: int
    body: bytes


SUPERVISOR_FROM_WORKER = (
    Ok | Failed | Metrics | Users
    | OpenTun | RunScript | SteerDatagram | TunnelEvent | Scrape | ConnectionDone
    | RealAddress
)  # fmt: skip
SUPERVISOR_FROM_AUTH = Ok | Failed | Metrics | Sessions | Bans | PingAddress
SUPERVISOR_FROM_NVM = Ok | Failed | Metrics
SUPERVISOR_FROM_CONSOLE = Ok | Failed | Metrics | ControlLine
WORKER_ACCEPTS = (
    Ok | Failed | Configure | Stop | NewConnection | MetricsConnection | Drain | Steered
    | CollectMetrics | UsersQuery | CloseTunnels | CloseSession | TunOpened | ScriptDone
    | ScrapeText | LoginResponse | SessionGranted | Admitted
)  # fmt: skip
AUTH_ACCEPTS = (
    Configure | Stop | AttachWorker | CollectMetrics | SessionsQuery | Unban | TerminateSession
    | NodeUsers | TerminateUser | AttachConsole
    | ConnectionPoints | LoginRequest | ConnectionGone | ClaimSession | TunnelUp | TunnelDown
    | CountersUpdate | EndSession | Ok | Failed
)  # fmt: skip
NVM_ACCEPTS = Configure | Stop | CollectMetrics | LeaseEvent | AttachConsole | Ok | Failed
AUTH_FROM_CONSOLE = AdminLogin | VpnUsersQuery | VpnUserEdit | OtpEnroll | Ok | Failed
NVM_FROM_CONSOLE = TelemetryQuery | Ok | Failed
CONSOLE_ACCEPTS = (
    Configure | Stop | CollectMetrics | ControlAnswer | AdminVerdict | VpnUsersList
    | UserConfigText | OtpSecret | TelemetryAnswer | Ok | Failed
)  # fmt: skip
