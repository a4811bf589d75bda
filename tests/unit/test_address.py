import ipaddress
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warpgate import PRESETS, Address, AddressError, Identity, Interface, NatBehaviour
from warpgate.proto.address import decode, decode_text, parse

KEY = Identity.generate().public_key


def dual_stack() -> Address:
    return Address(
        KEY,
        4000,
        4001,
        (
            Interface(
                private4=ipaddress.IPv4Address("10.0.1.11"),
                public4=ipaddress.IPv4Address("203.0.113.101"),
                private6=ipaddress.IPv6Address("fd00::11"),
                public6=ipaddress.IPv6Address("2001:db8::11"),
                public_udp_port=40001,
                nat=PRESETS["port-restricted-cone"],
            ),
        ),
        ("mqtt://203.0.113.30:1883",),
    )


def test_round_trip_bytes_and_text():
    a = dual_stack()
    assert decode(a.to_bytes()) == a
    assert decode_text(a.to_text()) == a
    assert parse(a.to_text()) == parse(a.to_bytes()) == a


def test_dual_stack_address_is_compact():
    a = dual_stack()
    assert len(a.to_bytes()) - len(a.brokers[0]) - 1 <= 150
    assert len(a.to_bytes()) <= 150


def test_text_is_paste_safe_and_case_insensitive():
    text = dual_stack().to_text()
    assert text.isalnum()
    assert decode_text("  " + text.upper() + "\n") == dual_stack()


def test_checksum_catches_a_typo():
    text = dual_stack().to_text()
    pos = len(text) // 2
    typo = text[:pos] + ("a" if text[pos] != "a" else "b") + text[pos + 1 :]
    with pytest.raises(AddressError, match="checksum"):
        decode_text(typo)


@pytest.mark.parametrize("cut", [1, 5, 40])
def test_truncated_text(cut):
    with pytest.raises(AddressError):
        decode_text(dual_stack().to_text()[:-cut])


def test_every_truncation_of_bytes_is_an_address_error():
    raw = dual_stack().to_bytes()
    for n in range(len(raw)):
        with pytest.raises(AddressError):
            decode(raw[:n])


def test_trailing_bytes():
    with pytest.raises(AddressError, match="trailing"):
        decode(dual_stack().to_bytes() + b"\0")


def test_wrong_version():
    raw = bytearray(dual_stack().to_bytes())
    raw[0] = 9
    with pytest.raises(AddressError, match="version 9"):
        decode(bytes(raw))


def test_wrong_key():
    raw = bytearray(dual_stack().to_bytes())
    raw[1] = 0x05  # not a compressed point prefix
    with pytest.raises(AddressError, match="wrong key"):
        decode(bytes(raw))
    raw[1] = 0x02
    raw[2:34] = b"\xff" * 32  # x beyond the field prime: not on the curve
    with pytest.raises(AddressError, match="wrong key"):
        decode(bytes(raw))


def test_absurd_interface_count():
    raw = bytearray(dual_stack().to_bytes())
    raw[38] = 200
    with pytest.raises(AddressError, match="interface count 200"):
        decode(bytes(raw))


def test_garbage_text_and_types():
    for bad in ["", "hello", "wg1", "wg1!!!!", "wg1" + "a" * 5000]:
        with pytest.raises(AddressError):
            decode_text(bad)
    with pytest.raises(AddressError):
        parse(12345)  # type: ignore[arg-type]


def test_construction_validates():
    with pytest.raises(AddressError):
        Interface()
    with pytest.raises(AddressError):
        Address(KEY, 0, 1, (Interface(private4=ipaddress.IPv4Address("10.0.0.1")),))
    with pytest.raises(AddressError):
        Address(KEY, 1, 1, ())


def test_endpoints_order_public_first_and_mapped_port():
    eps = list(dual_stack().endpoints("udp"))
    assert [(e.host, e.port, e.kind) for e in eps] == [
        ("2001:db8::11", 4001, "public"),  # IPv6 is not translated: the IPv4 mapping's port is not its
        ("203.0.113.101", 40001, "public"),
        ("fd00::11", 4001, "private"),
        ("10.0.1.11", 4001, "private"),
    ]


@given(st.binary(max_size=300))
def test_fuzz_bytes_never_raise_anything_else(data):
    try:
        decode(data)
    except AddressError:
        pass


@given(st.text(max_size=300))
def test_fuzz_text_never_raises_anything_else(text):
    try:
        decode_text("wg1" + text)
    except AddressError:
        pass


@given(st.binary(min_size=1, max_size=150))
def test_fuzz_mutated_valid_address(noise):
    raw = bytearray(dual_stack().to_bytes())
    for i, b in enumerate(noise):
        raw[(i * 7) % len(raw)] ^= b
    try:
        decode(bytes(raw))
    except AddressError:
        pass


ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
nat = st.sampled_from(list(PRESETS.values()) + [NatBehaviour()])
iface = st.builds(
    Interface,
    private4=ipv4,
    public4=st.none() | ipv4,
    private6=st.none() | ipv6,
    public6=st.none() | ipv6,
    public_udp_port=st.none() | st.integers(1, 65535),
    public_tcp_port=st.none() | st.integers(1, 65535),
    nat=nat,
)


@given(
    st.integers(1, 65535),
    st.integers(1, 65535),
    st.lists(iface, min_size=1, max_size=8),
    st.lists(st.text(min_size=1, max_size=50), max_size=4),
)
def test_round_trip_property(tcp, udp, ifaces, brokers):
    a = Address(KEY, tcp, udp, tuple(ifaces), tuple(brokers))
    assert decode(a.to_bytes()) == a
    assert decode_text(a.to_text()) == a


def test_a_gateway_mapping_travels_and_is_dialled_first():
    """Flag bit 6: the mapping a gateway granted (PCP, NAT-PMP, UPnP) is open to anyone, so it
    is the first endpoint of its transport; a mapping of one transport only leaves the other alone."""
    iface = Interface(
        private4=ipaddress.IPv4Address("10.0.1.11"),
        public4=ipaddress.IPv4Address("203.0.113.101"),
        nat=PRESETS["symmetric"],
        mapped4=ipaddress.IPv4Address("203.0.113.101"),
        mapped_tcp_port=40100,
    )
    addr = Address(KEY, 4000, 4000, (iface,))
    back = decode(addr.to_bytes())
    assert back == addr and back.mapped and not dual_stack().mapped
    assert next((e.host, e.port, e.kind) for e in back.endpoints("tcp")) == ("203.0.113.101", 40100, "mapped")
    assert all(e.kind != "mapped" for e in back.endpoints("udp"))
    with pytest.raises(AddressError, match="gateway mapping needs"):
        Interface(private4=ipaddress.IPv4Address("10.0.1.11"), mapped4=ipaddress.IPv4Address("203.0.113.1"))
    raw = bytearray(addr.to_bytes())
    raw[-5:-1] = b"\0\0\0\0"  # both mapped ports 0 (the last byte is the broker count)
    with pytest.raises(AddressError, match="maps on demand has no address"):
        decode(bytes(raw))  # "none held" must not carry an external address


def test_a_gateway_that_maps_on_demand_travels_as_bit6_without_ports():
    """No mapping held, but the gateway answered a mapping protocol: a peer may ask (portmap)."""
    iface = Interface(private4=ipaddress.IPv4Address("10.0.1.11"), nat=PRESETS["symmetric"], maps=True)
    addr = Address(KEY, 4000, 4000, (iface,))
    back = decode(addr.to_bytes())
    assert back == addr and back.maps and not back.mapped and not dual_stack().maps
    assert len(addr.to_bytes()) == len(Address(KEY, 4000, 4000, (replace(iface, maps=False),)).to_bytes()) + 8
    assert all(e.kind != "mapped" for e in back.endpoints("udp"))
    with pytest.raises(AddressError, match="not both"):
        Interface(
            private4=ipaddress.IPv4Address("10.0.1.11"),
            mapped4=ipaddress.IPv4Address("203.0.113.1"),
            mapped_udp_port=4000,
            maps=True,
        )


def test_only_keeps_the_families_a_node_runs():
    key = Identity.generate().public_key
    v4, v6 = ipaddress.IPv4Address("192.0.2.7"), ipaddress.IPv6Address("2001:db8::7")
    both = Interface(private4=v4, public4=v4, private6=v6, public6=v6, mapped4=v4, mapped_udp_port=40000)
    six_only = Interface(private6=ipaddress.IPv6Address("2001:db8::8"))
    addr = Address(key, 5000, 5000, (both, six_only))
    assert addr.only(["ipv4", "ipv6"]) is addr
    four = addr.only(["ipv4"])
    assert {e.host for p in ("tcp", "udp") for e in four.endpoints(p)} == {"192.0.2.7"}
    assert len(four.interfaces) == 1
    six = addr.only(["ipv6"])
    assert {e.host for p in ("tcp", "udp") for e in six.endpoints(p)} == {"2001:db8::7", "2001:db8::8"}
    with pytest.raises(AddressError, match="no ipv4 address"):
        Address(key, 5000, 5000, (six_only,)).only(["ipv4"])
