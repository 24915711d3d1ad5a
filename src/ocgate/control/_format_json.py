"""occtl's ``--json`` output (pure), always valid JSON.

Keys and value types are occtl's (ocserv 1.3 ``src/occtl/unix.c``): detail keys are the text
labels, time labels get an ``"_<Label>"`` sibling with the interval and a ``raw_*`` epoch value,
integers occtl prints with ``%lu`` are JSON numbers, everything else is a string. ``show users``,
``show user``, ``show id``, sessions and bans are arrays; ``show status`` is one object.

Deliberate deviations from ocserv, where its output is not valid JSON or repeats keys:

* a user without routes gets only ``"Routes": "defaultroute"`` (ocserv also emits an empty
  ``"Routes": []`` member first; JSON parsers keep the last one anyway);
* ``show iroutes`` is an array of one object per user (ocserv 1.x prints all users' members into a
  single object, issues #661/#669/#683);
* ``show sessions`` is always an array, and ``show ip bans`` entries are separated correctly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import tzinfo

from ocgate.control._blocks import JsonEmitter, JsonValue, session_block, status_block, user_block
from ocgate.control._model import NO_USER, BanInfo, SessionInfo, StatusInfo, UserInfo
from ocgate.control._protocol import Event
from ocgate.control._units import format_date, interval_between

__all__ = [
    "format_ban_points_json",
    "format_bans_json",
    "format_event_json",
    "format_iroutes_json",
    "format_session_json",
    "format_sessions_json",
    "format_status_json",
    "format_status_offline_json",
    "format_user_json",
    "format_users_json",
]

_Obj = dict[str, JsonValue]


def _dumps(value: _Obj | list[_Obj]) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _user_obj(user: UserInfo, now: float, tz: tzinfo | None) -> _Obj:
    e = JsonEmitter()
    user_block(e, user, now=now, tz=tz)
    return e.obj


def format_users_json(users: Sequence[UserInfo], *, now: float, tz: tzinfo | None = None) -> str:
    """``--json show users``: an array of full user objects."""
    return _dumps([_user_obj(u, now, tz) for u in users])


def format_user_json(users: Sequence[UserInfo], *, now: float, tz: tzinfo | None = None) -> str:
    """``--json show user NAME`` / ``show id ID``: an array (empty when nothing matched)."""
    return format_users_json(users, now=now, tz=tz)


def format_status_json(
    status: StatusInfo, *, now: float, tz: tzinfo | None = None, debug: bool = False
) -> str:
    """``--json show status``: one object."""
    e = JsonEmitter()
    status_block(e, status, now=now, tz=tz, debug=debug)
    return _dumps(e.obj)


def format_status_offline_json() -> str:
    """``--json show status`` when the server does not answer."""
    return _dumps({"Status": "offline"})


def _session_obj(s: SessionInfo, tz: tzinfo | None) -> _Obj:
    e = JsonEmitter()
    session_block(e, s, tz=tz)
    return e.obj


def format_sessions_json(
    sessions: Sequence[SessionInfo], *, tz: tzinfo | None = None, valid_only: bool = False
) -> str:
    """``--json show sessions all|valid``: an array of session objects."""
    return _dumps([_session_obj(s, tz) for s in sessions if s.is_valid or not valid_only])


def format_session_json(sessions: Sequence[SessionInfo], *, tz: tzinfo | None = None) -> str:
    """``--json show session SID``: an array of the matching session objects."""
    return format_sessions_json(sessions, tz=tz)


def format_bans_json(bans: Sequence[BanInfo], *, now: float, tz: tzinfo | None = None) -> str:
    """``--json show ip bans``: ``IP``, ``Since``/``_Since`` (the expiry, as occtl), ``Score``."""
    out: list[_Obj] = []
    for b in bans:
        if b.expires is None or b.expires <= now:
            continue
        out.append(
            {
                "IP": b.ip,
                "Since": format_date(b.expires, tz),
                "_Since": interval_between(b.expires, now),
                "Score": b.score,
            }
        )
    return _dumps(out)


def format_ban_points_json(bans: Sequence[BanInfo]) -> str:
    """``--json show ip ban points``: ``IP`` and ``Score`` of every scored IP."""
    return _dumps([{"IP": b.ip, "Score": b.score} for b in bans])


def format_iroutes_json(users: Sequence[UserInfo]) -> str:
    """``--json show iroutes``: one object per user with its ``iRoutes`` array."""
    return _dumps(
        [
            {
                "ID": u.id,
                "Username": u.username or NO_USER,
                "vhost": u.vhost,
                "Device": u.device,
                "IP": u.vpn_ip,
                "iRoutes": list(u.iroutes),
            }
            for u in users
        ]
    )


def format_event_json(event: Event, *, now: float, tz: tzinfo | None = None) -> str:
    """One ``--json show events`` update: an array holding the user's object, as occtl prints.

    ocgate adds ``"event"`` (``connect``/``disconnect``) and, for disconnects, ``"reason"``.
    """
    obj: _Obj = {"event": event.kind}
    if event.kind == "disconnect":
        obj["reason"] = event.reason or "unknown"
    obj.update(_user_obj(event.user, now, tz))
    return _dumps([obj])
