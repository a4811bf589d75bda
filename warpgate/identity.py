"""A node's identity: an ECDSA P-256 key pair (SEC 1 / FIPS 186-4) from ``cryptography``.

The node id is the first 16 bytes of SHA-256 over the compressed public key, written in hex. The
address carries the public key itself, so a peer can check signatures without asking anyone.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from warpgate.errors import IdentityError

PUBLIC_KEY_SIZE = 33  # SEC 1 compressed point on P-256
_CURVE = ec.SECP256R1()


def node_id_of(public_key: bytes) -> str:
    """Hex node id of a compressed public key."""
    return hashlib.sha256(public_key).digest()[:16].hex()


@functools.lru_cache(maxsize=1024)
def load_public_key(public_key: bytes) -> ec.EllipticCurvePublicKey:
    """Decode a compressed P-256 point; raises ``ValueError`` if it is not one.

    Cached (bounded): a peer's key is decoded once, not for every address, envelope and handshake
    (the decoding checks the point on the curve, which costs about as much as a signature check).
    """
    if len(public_key) != PUBLIC_KEY_SIZE or public_key[0] not in (2, 3):
        raise ValueError("public key is not a compressed P-256 point")
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, public_key)


def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is a valid ECDSA-SHA256 signature of ``data`` by ``public_key``."""
    try:
        load_public_key(public_key).verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True, eq=False)
class Identity:
    """A private key and what derives from it."""

    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> Identity:
        return cls(ec.generate_private_key(_CURVE))

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> Identity:
        """Load the key at ``path``, or create it there with mode 0600 if it does not exist."""
        p = Path(path)
        if p.exists():
            return cls.load(p)
        ident = cls.generate()
        ident.save(p)
        return ident

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        p = Path(path)
        try:
            mode = p.stat().st_mode
            data = p.read_bytes()
        except OSError as exc:
            raise IdentityError(f"cannot read key file {p}: {exc.strerror}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityError(f"key file {p} is readable by others (mode {oct(mode & 0o777)}); chmod 600")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError as exc:
            raise IdentityError(f"key file {p} holds no readable private key") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != _CURVE.name:
            raise IdentityError(f"key file {p} does not hold a P-256 ECDSA key")
        return cls(key)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key as PKCS#8 PEM, created with mode 0600 (never briefly world-readable)."""
        p = Path(path)
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise IdentityError(f"cannot create key file {p}: {exc.strerror}") from exc
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)

    @property
    def public_key(self) -> bytes:
        """Compressed SEC 1 encoding, 33 bytes."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )

    @property
    def node_id(self) -> str:
        return node_id_of(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))
