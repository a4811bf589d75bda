import os

import pytest

from warpgate import Identity
from warpgate.errors import IdentityError
from warpgate.identity import node_id_of, verify


def test_sign_verify():
    ident = Identity.generate()
    sig = ident.sign(b"data")
    assert verify(ident.public_key, sig, b"data")
    assert not verify(ident.public_key, sig, b"other")
    assert not verify(Identity.generate().public_key, sig, b"data")
    assert len(ident.public_key) == 33
    assert ident.node_id == node_id_of(ident.public_key) and len(ident.node_id) == 32


def test_persisted_with_mode_0600(tmp_path):
    path = tmp_path / "sub" / "key.pem"
    a = Identity.load_or_create(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert Identity.load_or_create(path).public_key == a.public_key


def test_refuses_world_readable_key(tmp_path):
    path = tmp_path / "key.pem"
    Identity.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match="readable by others"):
        Identity.load(path)


def test_garbage_key_file(tmp_path):
    path = tmp_path / "key.pem"
    path.write_bytes(b"not a key")
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="no readable private key"):
        Identity.load(path)
    with pytest.raises(IdentityError, match="cannot read"):
        Identity.load(tmp_path / "missing.pem")
