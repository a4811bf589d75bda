"""STUN Binding (RFC 8489 §5) through a node's own UDP socket: learn the public mapping of the
listening port, which is the endpoint a peer behind another NAT must use.

The codec is aioice's (``aioice.stun``); transactions retransmit with a doubling RTO (RFC 8489
§6.2.1, shortened for labs and LANs). STUN shares the node's socket with pipe frames: STUN's first
two bits are 00, pipe frames start with 0b11 (see ``warpgate.proto.frames``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aioice import stun

from warpgate.errors import WarpgateError

if TYPE_CHECKING:
    from warpgate.channels import UdpEndpoint


class StunError(WarpgateError):
    """No usable answer from a STUN server."""


def is_stun(datagram: bytes) -> bool:
    return len(datagram) >= 20 and datagram[0] < 0x40 and datagram[4:8] == b"\x21\x12\xa4\x42"


def parse_server(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, 3478
    if not port.isdigit():
        raise StunError(f"STUN server {text!r} is not host[:port]")
    return host.strip("[]"), int(port)


async def binding(
    endpoint: UdpEndpoint, server: tuple[str, int], *, rto: float = 0.2, tries: int = 4
) -> tuple[str, int]:
    """The server-reflexive address of ``endpoint``'s socket as ``server`` sees it."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    endpoint.stun_waiters[request.transaction_id] = fut
    try:
        for _ in range(tries):
            endpoint.sendto(bytes(request), server)
            try:
                async with asyncio.timeout(rto):
                    raw = await asyncio.shield(fut)
                break
            except TimeoutError:
                rto *= 2
        else:
            raise StunError(f"no answer from STUN server {server[0]}:{server[1]}")
    finally:
        endpoint.stun_waiters.pop(request.transaction_id, None)
    try:
        answer = stun.parse_message(raw)
        host, port = answer.attributes["XOR-MAPPED-ADDRESS"]
    except (ValueError, KeyError) as exc:
        raise StunError(f"malformed answer from STUN server {server[0]}:{server[1]}") from exc
    return str(host), int(port)
