import stat

import pytest

from rqp.crypto import new_data_key
from rqp.errors import KeyProviderError, WrongKeyError
from rqp.keys import LocalKeyProvider, generate_kek
from rqp.pem import write_key_pair
from rqp.signing import generate_signing_key


def test_keygen_writes_private_key_0600_and_refuses_overwrite(tmp_path):
    kid = generate_kek(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    assert kid.startswith("sha256:")
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    with pytest.raises(KeyProviderError, match="already exists"):
        generate_kek(tmp_path / "k.pem")
    with pytest.raises(KeyProviderError, match="too small"):
        generate_kek(tmp_path / "small.pem", bits=2048)


def test_both_kinds_of_key_are_written_alike_and_nothing_is_generated_over_an_existing_file(tmp_path):
    """The KEK and the signing key go through ``write_key_pair``: private 0600, public beside it,
    and an existing file is refused before a key is made (an RSA key takes a while)."""
    generate_signing_key(tmp_path / "s.pem")
    assert stat.S_IMODE((tmp_path / "s.pem").stat().st_mode) == 0o600
    assert (tmp_path / "s.pub.pem").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    made = []

    def generate():
        made.append(1)
        raise AssertionError("a key was generated although the file exists")

    with pytest.raises(
        KeyProviderError, match=r"s\.pub\.pem already exists; move it away or choose another --out path"
    ):
        write_key_pair(tmp_path / "new.pem", tmp_path / "s.pub.pem", generate)
    assert made == [] and not (tmp_path / "new.pem").exists()


def test_wrap_with_public_unwrap_with_private(kek):
    dk = new_data_key()
    wrapped = LocalKeyProvider(public_key_file=kek[1]).wrap(dk)
    assert wrapped.algorithm == "RSA-OAEP-256" and dk not in wrapped.wrapped
    assert LocalKeyProvider(private_key_file=kek[0]).unwrap(wrapped) == dk
    with pytest.raises(KeyProviderError, match="only a public key"):
        LocalKeyProvider(public_key_file=kek[1]).unwrap(wrapped)


def test_wrong_kek_names_both_keys(kek, other_kek):
    wrapped = LocalKeyProvider(private_key_file=kek[0]).wrap(new_data_key())
    other = LocalKeyProvider(private_key_file=other_kek[0])
    with pytest.raises(WrongKeyError) as e:
        other.unwrap(wrapped)
    assert wrapped.kek_id in str(e.value) and other.kek_id in str(e.value)


def test_missing_and_garbage_key_files(tmp_path):
    with pytest.raises(KeyProviderError, match="does not exist; create one with 'rqp keygen'"):
        LocalKeyProvider(private_key_file=tmp_path / "nope.pem")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(KeyProviderError, match="not an unencrypted PEM private key"):
        LocalKeyProvider(private_key_file=tmp_path / "junk.pem")


def test_a_damaged_private_key_is_refused_at_load_in_one_line(tmp_path):
    """OpenSSL's full RSA check (0.11 s of every role's start) is replaced by a round trip through
    the key: a file whose private exponents were damaged still parses, and is refused by that."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from rqp.errors import KeyProviderError
    from rqp.keys.local import LocalKeyProvider

    good = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    n = good.private_numbers()
    bad = rsa.RSAPrivateNumbers(n.p, n.q, n.d ^ 2, n.dmp1 ^ 2, n.dmq1 ^ 2, n.iqmp, n.public_numbers).private_key(
        unsafe_skip_rsa_key_validation=True
    )
    for name, key in (("good.pem", good), ("bad.pem", bad)):
        (tmp_path / name).write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    provider = LocalKeyProvider(private_key_file=tmp_path / "good.pem")
    assert provider.unwrap(provider.wrap(b"k" * 32)) == b"k" * 32
    with pytest.raises(KeyProviderError, match=r"bad\.pem is not a working RSA key .* restore it from its backup"):
        LocalKeyProvider(private_key_file=tmp_path / "bad.pem")
