"""Who is on the other end of a request: the peer, or the client a trusted proxy names.

Per-address limits are only as good as the address. Behind a load balancer every request comes
from the balancer, so its ``X-Forwarded-For`` is believed, hop by hop from the right, as long as
the hop that appended it is a configured trusted proxy (``PRESENCE_TRUSTED_PROXIES``). A client
cannot forge its way past that: whatever it writes into the header itself sits left of the
entries our proxies append, and the walk stops at the first untrusted hop.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The address to hold responsible for a request."""
    current = (peer or "").strip() or "unknown"
    if not forwarded_for or not _trusted(current, trusted):
        return current
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if not hop:
            break
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # garbage written by someone: keep the last address we could vouch for
        current = hop
        if not _trusted(current, trusted):
            break
    return current
