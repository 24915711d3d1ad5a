"""End-to-end tests: openconnect against the gateway in network namespaces (need root)."""
