"""``tcp_only``: dial the peer's TCP endpoints, public ones first, one after another.

A baseline a plugin author can race against: it reaches exactly the peers whose TCP port is
reachable (an open host, a full cone, a port forward), and says at once when the address offers
no TCP endpoint. It uses only what its ``AttemptContext`` gives it.
"""

from __future__ import annotations

from warpgate import AttemptContext, AttemptFailed, Filtering, Mapping, Pipe, Plugin
from warpgate.proto.nat import Behaviours

__all__ = ["TcpOnly"]


class TcpOnly(Plugin):
    """Dial the peer's TCP endpoints one by one (public first)."""

    name = "tcp_only"

    def applicable(self, ctx: AttemptContext) -> str | None:
        if not any(True for _ in ctx.dest.endpoints("tcp")):
            return "the peer's address has no TCP endpoint"
        return None

    @classmethod
    def reach(cls, caller: Behaviours, callee: Behaviours) -> bool | None:
        """Theory for the lab (RFC 4787 axes): the callee's TCP port takes a SYN from anyone when
        its NAT filters endpoint-independently and has (or needs) no port mapping of its own."""
        tcp = callee.tcp
        if tcp.filtering is Filtering.UNKNOWN or tcp.mapping is Mapping.UNKNOWN:
            return None
        return tcp.filtering is Filtering.ENDPOINT_INDEPENDENT and tcp.mapping in (
            Mapping.NONE,
            Mapping.ENDPOINT_INDEPENDENT,
        )

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        reasons = []
        for ep in sorted(ctx.dest.endpoints("tcp"), key=lambda e: e.kind != "public"):
            try:
                return await ctx.connect_tcp(ep.host, ep.port)
            except AttemptFailed as exc:
                reasons.append(str(exc))
        raise AttemptFailed("; ".join(reasons) or "no TCP endpoint answered")
