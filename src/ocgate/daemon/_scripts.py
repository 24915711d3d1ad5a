"""Running connect/disconnect/host-update scripts without blocking other clients.

A script runs as a child process with ocserv's environment (``ocgate.gateway.script_environment``)
and its output going to the server's standard error, as ocserv does. Only the session that waits for
it waits; a script still running after ``SCRIPT_TIMEOUT`` seconds is killed and counts as failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from collections.abc import Mapping

__all__ = ["SCRIPT_TIMEOUT", "run_script"]

log = logging.getLogger("ocgate.script")

SCRIPT_TIMEOUT = 30.0
_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


async def run_script(path: str, env: Mapping[str, str], *, limit: float = SCRIPT_TIMEOUT) -> int:
    """Run ``path`` with ``env``; return its exit status (negative: killed; 127: not run)."""
    full_env = {"PATH": os.environ.get("PATH", _BASE_PATH), **env}
    try:
        proc = await asyncio.create_subprocess_exec(
            path, env=full_env, stdin=subprocess.DEVNULL, stdout=2, stderr=2
        )
    except OSError as exc:
        log.error("event=script-failed script=%s reason=%r", path, exc.strerror)
        return 127
    try:
        status = await asyncio.wait_for(proc.wait(), limit)
    except TimeoutError:
        proc.kill()
        status = await proc.wait()
        log.error("event=script-timeout script=%s limit=%.0f", path, limit)
    if status != 0:
        log.warning(
            "event=script-exit script=%s reason=%s status=%d", path, env.get("REASON"), status
        )
    return status
