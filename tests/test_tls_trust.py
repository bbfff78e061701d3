"""TLS trust: what a revocation list may add, what ``verify_issuer=False``
decides (the same as full verification, issuer aside), and encrypted keys.

Every decision is made in a real handshake over loopback; certificates come
from trustme, and those it cannot make (odd names, purposes, extensions) are
built with ``cryptography`` and signed by a trustme CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pty
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trio_rsocket import RSocket, TLSError, _tls, set_default_certs
from trio_rsocket.testing import echo_handler

from .conftest import Configure, round_trip, serving_port

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
PASSWORD = "correct horse"


def presenting(key_pem: bytes, cert_pem: bytes) -> Configure:
    return lambda sock: sock.set_certs(key=key_pem, cert=cert_pem)


def ca_key(ca: trustme.CA) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


# ----------------------------------------------------------------------------
# A revocation list only ever adds CRLs


def revocation_list(ca: trustme.CA) -> bytes:
    """An empty CRL signed by *ca*, in PEM."""
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes()).subject
    builder = x509.CertificateRevocationListBuilder().issuer_name(issuer).last_update(NOW - DAY).next_update(NOW + DAY)
    return builder.sign(ca_key(ca), hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def as_pem_block(ca: trustme.CA, label: str) -> bytes:
    """*ca*'s certificate under another PEM label (OpenSSL reads all three
    as certificates; a TRUSTED CERTIFICATE's trust settings are optional)."""
    return ca.cert_pem.bytes().replace(b"CERTIFICATE-----", label.encode() + b"-----")


@pytest.mark.parametrize("label", ["CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"])
async def test_a_revocation_list_with_a_certificate_appended_is_refused(
    tmp_path: Path, ca: trustme.CA, label: str
) -> None:
    attacker = trustme.CA()
    revoke = tmp_path / "ca.crl"
    revoke.write_bytes(revocation_list(ca) + as_pem_block(attacker, label))
    async with serving_port(presenting(*_leaf_pems(attacker, dns=["localhost"]))) as port:
        client = RSocket()
        client.set_certs(authority=ca.cert_pem.bytes(), revoke=str(revoke))
        with pytest.raises(TLSError, match=rf"^Cannot load certificate revoke list: {revoke} must hold PEM CRLs only$"):
            await client.connect("localhost", port)
        assert not client.is_connected()


async def test_a_revocation_list_of_crls_only_is_still_accepted(ca: trustme.CA) -> None:
    revoke = revocation_list(ca) + revocation_list(trustme.CA())
    async with serving_port(presenting(*_leaf_pems(ca, dns=["localhost"]))) as port, RSocket() as client:
        client.set_certs(authority=ca.cert_pem.bytes(), revoke=revoke)
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"


# ----------------------------------------------------------------------------
# verify_issuer=False decides as full verification does, issuer aside


@dataclass
class Leaf:
    """How to build one server certificate, and what both modes must say."""

    dns: Sequence[str] = ("localhost",)
    ips: Sequence[str] = ()
    common_names: Sequence[str] = ()
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = ()
    not_before: datetime.datetime = field(default_factory=lambda: NOW - DAY)
    not_after: datetime.datetime = field(default_factory=lambda: NOW + DAY)
    host: str = "localhost"
    #: None when both modes accept the certificate, else the start of the words.
    refusal: str | None = None


def _leaf_pems(
    ca: trustme.CA,
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    common_names: Sequence[str] = (),
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    not_before: datetime.datetime = NOW - DAY,
    not_after: datetime.datetime = NOW + DAY,
) -> tuple[bytes, bytes]:
    """``(key_pem, cert_pem)`` of a leaf issued by *ca*."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes()).subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name) for name in common_names]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key(ca).public_key()), critical=False)
    )
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    cert = builder.sign(ca_key(ca), hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    usages = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**(usages | allowed))


_UNKNOWN_EXTENSION = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
_CLIENT_ONLY = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
_NETSCAPE_CLIENT_ONLY = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.16.840.1.113730.1.1"), b"\x03\x02\x07\x80")
_WITH_URN = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.UniformResourceIdentifier("urn:example:a:b")])
_MISMATCH = "Certificate hostname mismatch. Expecting "
_PURPOSE = "Certificate is not for this purpose (key usage)"
_CRITICAL = "Certificate has an unknown critical extension"
EXPIRED_FROM = NOW - 3 * DAY
EXPIRED_AT = NOW - DAY

SAME_DECISIONS = [
    pytest.param(Leaf(), id="plain"),
    pytest.param(Leaf(dns=(), common_names=("localhost", "other.example")), id="two-common-names-first-matching"),
    pytest.param(Leaf(dns=(), common_names=("other.example", "localhost")), id="two-common-names-last-matching"),
    pytest.param(Leaf(dns=(), ips=("127.0.0.1",), common_names=("localhost",)), id="common-name-beside-only-an-ip"),
    pytest.param(
        Leaf(dns=("other.example",), common_names=("localhost",), refusal=_MISMATCH), id="common-name-ignored"
    ),
    pytest.param(Leaf(dns=("localhost.",), refusal=_MISMATCH), id="name-with-a-trailing-dot"),
    pytest.param(Leaf(host="localhost.", refusal=_MISMATCH), id="host-with-a-trailing-dot"),
    pytest.param(Leaf(dns=("*.org", "w*.example.org", "localhost")), id="invalid-wildcards-beside-a-match"),
    # Entries service_identity's public API cannot read make it refuse the
    # whole certificate; OpenSSL skips them (it compares no URIs).
    pytest.param(Leaf(dns=(), extensions=[(_WITH_URN, False)]), id="urn-beside-a-match"),
    pytest.param(
        Leaf(dns=(), extensions=[(_WITH_URN, False)], host="other.example", refusal=_MISMATCH), id="urn-no-match"
    ),
    pytest.param(Leaf(dns=("*.org",), ips=("127.0.0.1",), host="127.0.0.1"), id="invalid-wildcard-beside-an-ip"),
    pytest.param(Leaf(dns=("*.example.org",), host="www.example.org"), id="wildcard"),
    pytest.param(Leaf(dns=("*.example.org",), host="a.b.example.org", refusal=_MISMATCH), id="wildcard-one-label"),
    pytest.param(Leaf(dns=(), ips=("::1",), host="::1"), id="ip-address"),
    pytest.param(Leaf(dns=("127.0.0.1",), host="127.0.0.1", refusal=_MISMATCH), id="ip-address-as-a-dns-name"),
    pytest.param(Leaf(extensions=[(_CLIENT_ONLY, False)], refusal=_PURPOSE), id="client-auth-only"),
    pytest.param(
        Leaf(
            extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]), False)], refusal=_PURPOSE
        ),
        id="any-extended-key-usage",
    ),
    pytest.param(Leaf(extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), True)]), id="server-auth"),
    pytest.param(Leaf(extensions=[(_key_usage(key_cert_sign=True), True)], refusal=_PURPOSE), id="key-usage-ca-only"),
    pytest.param(Leaf(extensions=[(_key_usage(key_agreement=True), True)]), id="key-usage-key-agreement"),
    pytest.param(Leaf(extensions=[(_NETSCAPE_CLIENT_ONLY, False)], refusal=_PURPOSE), id="netscape-client-only"),
    pytest.param(Leaf(extensions=[(_UNKNOWN_EXTENSION, True)], refusal=_CRITICAL), id="unknown-critical-extension"),
    pytest.param(Leaf(extensions=[(_UNKNOWN_EXTENSION, False)]), id="unknown-extension"),
    pytest.param(
        Leaf(extensions=[(x509.SubjectKeyIdentifier(b"\x01" * 20), True)], refusal=_CRITICAL),
        id="critical-extension-openssl-does-not-handle",
    ),
    pytest.param(Leaf(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)]), id="ca-as-leaf"),
    pytest.param(Leaf(not_before=EXPIRED_FROM, not_after=EXPIRED_AT, refusal="Certificate has expired"), id="expired"),
    pytest.param(
        Leaf(not_before=NOW + DAY, not_after=NOW + 2 * DAY, refusal="Certificate is not yet valid"), id="not-yet-valid"
    ),
    pytest.param(
        Leaf(dns=("other.example",), not_before=EXPIRED_FROM, not_after=EXPIRED_AT, refusal=_MISMATCH),
        id="expired-and-mismatched",
    ),
    pytest.param(
        Leaf(extensions=[(_CLIENT_ONLY, False)], not_before=EXPIRED_FROM, not_after=EXPIRED_AT, refusal=_PURPOSE),
        id="expired-client-only",
    ),
]


async def _decision(ca: trustme.CA, server: Configure, host: str, *, verify_issuer: bool) -> str | None:
    """What a client decides about *server* when it asks for *host*: None
    (accepted) or the error words.

    The client is the TLS part of ``RSocket.connect`` (the context, the
    handshake, then check_peer), over a TCP connection to 127.0.0.1 whatever
    *host* is, so that names nobody resolves can be asked for.
    """
    settings = _tls.TLSSettings(authority=ca.cert_pem.bytes()) if verify_issuer else _tls.TLSSettings()
    tls = _tls.client_context(settings if verify_issuer else settings.replace(verify_peer=True, verify_issuer=False))
    async with serving_port(server) as port:
        stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), tls.context, server_hostname=host)
        try:
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as exc:
                return str(_tls.handshake_error(exc, host))
            if tls.forgives_issuer:
                try:
                    _tls.check_peer(stream.getpeercert(binary_form=True), host)
                except TLSError as exc:
                    return str(exc)
            await stream.send_all(b"ping")
            assert await stream.receive_some(4) == b"ping"
            return None
        finally:
            await trio.aclose_forcefully(stream)


@pytest.mark.parametrize("leaf", SAME_DECISIONS)
async def test_verify_issuer_off_decides_as_full_verification(ca: trustme.CA, leaf: Leaf) -> None:
    server = presenting(
        *_leaf_pems(
            ca,
            dns=leaf.dns,
            ips=leaf.ips,
            common_names=leaf.common_names,
            extensions=leaf.extensions,
            not_before=leaf.not_before,
            not_after=leaf.not_after,
        )
    )
    full = await _decision(ca, server, leaf.host, verify_issuer=True)
    issuer_free = await _decision(ca, server, leaf.host, verify_issuer=False)
    if leaf.refusal is None:
        assert (full, issuer_free) == (None, None)
    else:
        # Full verification names only the host; verify_issuer=False adds the names it saw.
        assert full is not None
        assert full.startswith(leaf.refusal)
        assert issuer_free is not None
        assert issuer_free.startswith(full)


async def test_verify_issuer_off_forgives_an_unknown_issuer(ca: trustme.CA) -> None:
    server = presenting(*_leaf_pems(trustme.CA(), dns=["localhost"]))
    assert await _decision(ca, server, "localhost", verify_issuer=True) == "Certificate not trusted"
    assert await _decision(ca, server, "localhost", verify_issuer=False) is None


def test_the_issuer_free_check_needs_no_parser_of_its_own() -> None:
    # The certificate is read by cryptography; what it cannot read is refused.
    with pytest.raises(TLSError, match=r"^Unable to parse the peer's certificate$"):
        _tls.check_peer(b"\x30\x03\x02\x01\x00", "localhost")
    assert not hasattr(_tls, "_parse_certificate")


# ----------------------------------------------------------------------------
# Encrypted private keys


@dataclass
class EncryptedCert:
    key: Path
    cert: Path


@pytest.fixture(scope="module")
def encrypted(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> EncryptedCert:
    """A trustme leaf for localhost whose key file is encrypted with PASSWORD."""
    leaf = ca.issue_cert("localhost")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    directory = tmp_path_factory.mktemp("encrypted")
    paths = EncryptedCert(key=directory / "server.key", cert=directory / "server.pem")
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )
    leaf.cert_chain_pems[0].write_to_path(str(paths.cert))
    return paths


@pytest.mark.parametrize("password", [PASSWORD, PASSWORD.encode(), lambda: PASSWORD], ids=["str", "bytes", "function"])
async def test_a_password_unlocks_an_encrypted_key(ca: trustme.CA, encrypted: EncryptedCert, password: Any) -> None:
    listening = lambda sock: sock.set_certs(key=str(encrypted.key), cert=str(encrypted.cert), password=password)  # noqa: E731
    async with serving_port(listening) as port, RSocket() as client:
        client.set_certs(authority=ca.cert_pem.bytes())
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"


async def test_a_default_password_unlocks_the_default_key(ca: trustme.CA, encrypted: EncryptedCert) -> None:
    set_default_certs(key=str(encrypted.key), cert=str(encrypted.cert), password=PASSWORD)
    async with serving_port(lambda sock: sock.set_tls()) as port, RSocket() as client:
        client.set_certs(authority=ca.cert_pem.bytes())
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"


async def test_an_encrypted_key_without_a_password_is_a_tls_error_naming_the_file(encrypted: EncryptedCert) -> None:
    listener = RSocket()
    listener.set_certs(key=str(encrypted.key), cert=str(encrypted.cert))
    async with trio.open_nursery() as nursery:
        with pytest.raises(TLSError, match=rf"^Private key {encrypted.key} is encrypted: pass password="):
            await listener.listen("127.0.0.1", 0, echo_handler, nursery=nursery)
    assert listener.get_handle() == -1


async def test_a_wrong_password_is_a_tls_error_naming_the_file(encrypted: EncryptedCert) -> None:
    listener = RSocket()
    listener.set_certs(key=str(encrypted.key), cert=str(encrypted.cert), password="wrong")
    async with trio.open_nursery() as nursery:
        with pytest.raises(TLSError, match=rf"^Unable to decrypt private key {encrypted.key}: wrong password$"):
            await listener.listen("127.0.0.1", 0, echo_handler, nursery=nursery)


def test_the_password_is_part_of_the_context_cache_key(encrypted: EncryptedCert) -> None:
    settings = _tls.TLSSettings(key=str(encrypted.key), cert=str(encrypted.cert), password=PASSWORD)
    _tls.server_context(settings)  # built and cached
    with pytest.raises(TLSError, match="wrong password"):
        _tls.server_context(settings.replace(password="wrong"))


_NO_PROMPT_CHILD = """
import os, sys
os.close(os.open(os.ttyname(0), os.O_RDWR))  # a session leader's first terminal becomes its controlling one
from trio_rsocket import TLSError, _tls
try:
    _tls.server_context(_tls.TLSSettings(key=sys.argv[1], cert=sys.argv[2]))
except TLSError as exc:
    print("TLSError:", exc, flush=True)
"""


def test_an_encrypted_key_never_prompts_on_the_terminal(encrypted: EncryptedCert) -> None:
    # A child whose controlling terminal is a pseudo-terminal nobody types
    # into: an OpenSSL prompt would wait there until the timeout.
    controller, terminal = pty.openpty()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", _NO_PROMPT_CHILD, str(encrypted.key), str(encrypted.cert)],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=terminal,
            start_new_session=True,
        )
        try:
            output, _ = child.communicate(timeout=60)
        finally:
            child.kill()
            child.wait()
    finally:
        os.close(controller)
        os.close(terminal)
    assert output.decode() == f"TLSError: Private key {encrypted.key} is encrypted: pass password=...\n"
