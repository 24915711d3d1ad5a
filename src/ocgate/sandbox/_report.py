"""What the kernel says about a process's confinement, for logs and tests.

``/proc/PID/status`` is the ground truth: ids (real, effective, saved, filesystem), groups,
capability sets as hex masks, ``NoNewPrivs`` and the seccomp mode (0 none, 1 strict, 2 filter).
"""

from __future__ import annotations

__all__ = ["REPORT_FIELDS", "sandbox_report"]

#: The ``/proc/PID/status`` lines that :func:`sandbox_report` returns.
REPORT_FIELDS = (
    "Name",
    "Uid",
    "Gid",
    "Groups",
    "Threads",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
)


def sandbox_report(pid: int | None = None) -> dict[str, str]:
    """Read the confinement-related lines of ``/proc/PID/status``.

    :param pid: another process to inspect; the calling process by default.
    :returns: ``{"Uid": "1000\\t1000\\t1000\\t1000", "CapEff": "0000000000000000",
        "Seccomp": "2", ...}``, values as the kernel prints them, for the fields in
        :data:`REPORT_FIELDS` that this kernel has.
    """
    path = f"/proc/{'self' if pid is None else int(pid)}/status"
    with open(path, encoding="utf-8", errors="replace") as status:
        lines = status.read().splitlines()
    report: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key in REPORT_FIELDS:
            report[key] = value.strip()
    return report
