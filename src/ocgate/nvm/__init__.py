"""NVM (Cisco Network Visibility Module) telemetry collector: IPFIX / nvzFlow.

The sans-IO IPFIX decoder lives in :mod:`ocgate.nvm.ipfix`.
"""

from __future__ import annotations

__all__: list[str] = []
