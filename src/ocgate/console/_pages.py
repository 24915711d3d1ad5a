"""The console's HTML pages: static shells that ``/static/console.js`` fills through the API.

Every page is the same frame (header with the navigation, ``#whoami`` and ``#logout``, the
``#flash`` live region and the ``#confirm`` dialog) around one page body. Pages carry no inline
script or style (the CSP forbids both); the session's CSRF token and the page name travel in
``<meta>`` and ``data-`` attributes, and every value interpolated here is HTML-escaped.
"""

from __future__ import annotations

from html import escape
from typing import Final

__all__ = ["PAGES", "login_page", "render_page"]

_HEAD: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{csrf}">
<title>{title} · ocgate console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/console.css">
<script src="/static/console.js" defer></script>
</head>
"""

_NAV: Final = (
    ("/sessions", "Sessions"),
    ("/users", "Users"),
    ("/bans", "Bans"),
    ("/server", "Server"),
    ("/telemetry", "Telemetry"),
)

_CURRENT: Final = ' aria-current="page"'

_FRAME: Final = """<body data-page="{page}" data-role="{role}">
<a class="skip" href="#main">Skip to content</a>
<header>
<span class="brand">ocgate console</span>
<nav aria-label="Main">{nav}</nav>
<span id="whoami">{username} ({role})</span>
<button type="button" id="logout">Log out</button>
</header>
<div id="flash" role="status" aria-live="polite"></div>
<main id="main" tabindex="-1">
{body}
</main>
<dialog id="confirm" aria-labelledby="confirm-text">
<p id="confirm-text">Are you sure?</p>
<div class="actions">
<button type="button" id="confirm-yes">Yes</button>
<button type="button" id="confirm-no" autofocus>No</button>
</div>
</dialog>
</body>
</html>
"""

_SESSIONS: Final = """<h1>Sessions</h1>
<p class="hint">Connected tunnels, refreshed every 2 seconds.
<span id="sessions-updated"></span></p>
<div class="scroll">
<table id="sessions-table">
<caption>Connected users</caption>
<thead><tr><th scope="col">User</th><th scope="col">Group</th><th scope="col">Remote</th>
<th scope="col">VPN address</th><th scope="col">Transport</th><th scope="col">DTLS cipher</th>
<th scope="col">RX</th><th scope="col">TX</th><th scope="col">Rate RX / TX</th>
<th scope="col">Since</th><th scope="col" class="node" hidden>Node</th>
<th scope="col">Actions</th></tr></thead>
<tbody></tbody>
</table>
</div>
"""

_USERS: Final = """<h1>Users</h1>
<p id="users-note" class="hint"></p>
<form id="add-user" class="inline-form">
<fieldset><legend>Add a user</legend>
<label for="new-username">User name</label>
<input id="new-username" name="username" required maxlength="64" autocomplete="off">
<label for="new-password">Password</label>
<input id="new-password" name="password" type="password" required maxlength="512"
 autocomplete="new-password">
<label for="new-groups">Groups (comma-separated)</label>
<input id="new-groups" name="groups" maxlength="2048" autocomplete="off">
<button type="submit" id="add-user-submit">Add user</button>
</fieldset>
</form>
<div class="scroll">
<table id="users-table">
<caption>VPN users (password file)</caption>
<thead><tr><th scope="col">User</th><th scope="col">Groups</th><th scope="col">Locked</th>
<th scope="col">OTP</th><th scope="col">Actions</th></tr></thead>
<tbody></tbody>
</table>
</div>
"""

_USER: Final = """<h1>User <span id="user-name">{name}</span></h1>
<p><a href="/users">Back to users</a></p>
<form id="set-password" class="inline-form">
<fieldset><legend>Set password</legend>
<label for="password-new">New password</label>
<input id="password-new" type="password" required maxlength="512" autocomplete="new-password">
<button type="submit" id="password-submit">Set password</button>
</fieldset>
</form>
<form id="groups-form" class="inline-form">
<fieldset><legend>Groups</legend>
<label for="groups-input">Groups (comma-separated)</label>
<input id="groups-input" maxlength="2048" autocomplete="off">
<button type="submit" id="groups-submit">Save groups</button>
</fieldset>
</form>
<section aria-labelledby="otp-heading">
<h2 id="otp-heading">One-time passwords (TOTP)</h2>
<p id="otp-state" class="hint"></p>
<button type="button" id="otp-enroll">Enroll a new secret</button>
<button type="button" id="otp-reset">Remove OTP</button>
<div id="otp-result" hidden>
<p>Shown once: scan the code or copy the secret now.</p>
<div id="otp-qr"></div>
<p>Secret (base32): <code id="otp-secret"></code></p>
<p>URI: <code id="otp-uri"></code></p>
</div>
</section>
<section aria-labelledby="config-heading">
<h2 id="config-heading">Per-user configuration</h2>
<pre id="user-config"></pre>
</section>
"""

_BANS: Final = """<h1>Bans</h1>
<div class="scroll">
<table id="bans-table">
<caption>Banned or scored addresses</caption>
<thead><tr><th scope="col">Address</th><th scope="col">Score</th><th scope="col">Banned until</th>
<th scope="col">Since</th><th scope="col">Actions</th></tr></thead>
<tbody></tbody>
</table>
</div>
"""

_SERVER: Final = """<h1>Server</h1>
<button type="button" id="reload">Reload configuration</button>
<h2>Status</h2>
<dl id="status"></dl>
<h2>Configuration warnings</h2>
<ul id="warnings"></ul>
<h2>Audit log</h2>
<div class="scroll">
<table id="audit-table">
<caption>Recent changes (newest first)</caption>
<thead><tr><th scope="col">Time</th><th scope="col">Who</th><th scope="col">Role</th>
<th scope="col">Source</th><th scope="col">Action</th><th scope="col">Target</th>
<th scope="col">Outcome</th></tr></thead>
<tbody></tbody>
</table>
</div>
"""

_TELEMETRY: Final = """<h1>Telemetry</h1>
<form id="flow-filter" class="filter-form">
<fieldset><legend>Flows</legend>
<div class="field"><label for="f-user">User</label>
<input id="f-user" maxlength="256" autocomplete="off"></div>
<div class="field"><label for="f-udid">Device (UDID)</label>
<input id="f-udid" maxlength="128" autocomplete="off"></div>
<div class="field"><label for="f-process">Process</label>
<input id="f-process" maxlength="256" autocomplete="off"></div>
<div class="field"><label for="f-host">Destination host</label>
<input id="f-host" maxlength="256" autocomplete="off"></div>
<div class="field"><label for="f-since">Since</label>
<input id="f-since" type="datetime-local"></div>
<div class="field"><label for="f-until">Until</label>
<input id="f-until" type="datetime-local"></div>
<div class="field"><label for="f-search">Text in results</label>
<input id="f-search" maxlength="256" autocomplete="off"></div>
<button type="submit" id="f-submit">Search</button>
</fieldset>
</form>
<div class="charts">
<figure><figcaption id="chart-top-talkers-caption">Top talkers (bytes by user)</figcaption>
<svg id="chart-top-talkers" role="img" aria-labelledby="chart-top-talkers-caption"
 aria-label="Top talkers"><title>Top talkers</title></svg></figure>
<figure><figcaption id="chart-top-destinations-caption">Top destinations</figcaption>
<svg id="chart-top-destinations" role="img" aria-labelledby="chart-top-destinations-caption"
 aria-label="Top destinations"><title>Top destinations</title></svg></figure>
<figure class="wide"><figcaption id="chart-timeline-caption">Bytes over time</figcaption>
<svg id="chart-timeline" role="img" aria-labelledby="chart-timeline-caption"
 aria-label="Bytes over time"><title>Bytes over time</title></svg></figure>
</div>
<h2>Flows</h2>
<div class="scroll">
<table id="flows-table">
<caption>Flows (newest first)</caption>
<thead><tr><th scope="col">End</th><th scope="col">VPN user</th><th scope="col">User</th>
<th scope="col">Device</th><th scope="col">Process</th><th scope="col">Destination</th>
<th scope="col">Protocol</th><th scope="col">In</th><th scope="col">Out</th></tr></thead>
<tbody></tbody>
</table>
</div>
<h2>Endpoints</h2>
<div class="scroll">
<table id="endpoints-table">
<caption>Endpoint inventory</caption>
<thead><tr><th scope="col">UDID</th><th scope="col">Name</th><th scope="col">OS</th>
<th scope="col">Agent</th><th scope="col">Last seen</th></tr></thead>
<tbody></tbody>
</table>
</div>
<h2>Exporters</h2>
<div class="scroll">
<table id="exporters-table">
<caption>Exporter health</caption>
<thead><tr><th scope="col">Exporter</th><th scope="col">Live</th><th scope="col">Records</th>
<th scope="col">Templates</th><th scope="col">Sequence gaps</th><th scope="col">Malformed</th>
</tr></thead>
<tbody></tbody>
</table>
</div>
"""

PAGES: Final[dict[str, tuple[str, str]]] = {
    "sessions": ("Sessions", _SESSIONS),
    "users": ("Users", _USERS),
    "user": ("User", _USER),
    "bans": ("Bans", _BANS),
    "server": ("Server", _SERVER),
    "telemetry": ("Telemetry", _TELEMETRY),
}
"""Page name -> (title, body template)."""

_LOGIN: Final = """<body data-page="login">
<main id="main" class="login">
<h1>ocgate console</h1>
<form id="login-form">
<label for="username">User name</label>
<input id="username" name="username" required maxlength="64" autocomplete="username" autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" required maxlength="512"
 autocomplete="current-password">
<label for="otp">One-time code</label>
<input id="otp" name="otp" required inputmode="numeric" pattern="[0-9]{6,8}" maxlength="8"
 autocomplete="one-time-code">
<button type="submit" id="login">Log in</button>
<p id="login-error" role="alert"></p>
</form>
</main>
</body>
</html>
"""


def render_page(page: str, *, username: str, role: str, csrf: str, name: str = "") -> str:
    """One page of a logged-in administrator.

    :param page: a key of :data:`PAGES`.
    :param name: the user name of the ``user`` page.
    """
    title, body = PAGES[page]
    current = "/users" if page == "user" else f"/{page}"
    nav = "".join(
        f'<a href="{href}"{_CURRENT if href == current else ""}>{label}</a>' for href, label in _NAV
    )
    head = _HEAD.format(csrf=escape(csrf), title=escape(f"{title} {name}".strip()))
    return head + _FRAME.format(
        page=page,
        role=escape(role),
        nav=nav,
        username=escape(username),
        body=body.format(name=escape(name)) if page == "user" else body,
    )


def login_page(csrf: str) -> str:
    """The login form; ``csrf`` is the pre-session double-submit token."""
    return _HEAD.format(csrf=escape(csrf), title="Log in") + _LOGIN
