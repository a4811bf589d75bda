"""What should connect, derived from the profiles' RFC 4787 axes (the "expected" of every cell).

A peer is reachable without help when a packet from anyone reaches its advertised endpoint:

- over UDP when its NAT filters endpoint-independently (open, full cone: the node's STUN-learned
  mapping is open to all) and the caller's UDP is not blocked;
- over TCP only when there is no translation and no filter (open): a NAT has no TCP mapping for a
  listening port until something leaves from it.

``direct`` works when A (the callee) is reachable from B; ``reverse`` when B is reachable from A.
Plugins without a theory here give ``None`` (not deterministic, or not modelled): reports show
them as observed only.
"""

from __future__ import annotations

from netsim.nat import PROFILES
from warpgate.proto.nat import Filtering, Mapping


def reachable(target: str, source: str) -> bool:
    t, s = PROFILES[target], PROFILES[source]
    udp = t.udp.filtering is Filtering.ENDPOINT_INDEPENDENT and s.udp.filtering is not Filtering.BLOCKED
    tcp = t.tcp.mapping is Mapping.NONE and t.tcp.filtering is Filtering.ENDPOINT_INDEPENDENT
    return udp or tcp


def expected(plugin: str, a: str, b: str) -> bool | None:
    """Should ``plugin`` alone connect B (caller) to A (callee)? None: no theory for it."""
    if plugin == "direct":
        return reachable(a, b)
    if plugin == "reverse":
        return reachable(b, a)
    return None


def expected_race(plugins: tuple[str, ...], a: str, b: str) -> bool | None:
    """A race succeeds when any plugin would; unknown when none is known to and one is unknown."""
    verdicts = [expected(p, a, b) for p in plugins]
    if any(v is True for v in verdicts):
        return True
    if any(v is None for v in verdicts):
        return None
    return False
