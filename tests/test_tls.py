"""TLS: settings, verification in Ioto's words, mutual TLS, ALPN, deadlines,
and interoperability with TLS peers nobody here wrote (Python's blocking
:mod:`ssl`, ``openssl s_server`` / ``s_client``).

Certificates come from trustme; the few it cannot make (a self-signed leaf,
a CRL) are built with ``cryptography``.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trio_rsocket import (
    DeadlineError,
    RSocket,
    TLSError,
    _secure,
    _tls,
    set_default_certs,
    set_default_ciphers,
    set_default_verify,
)
from trio_rsocket.testing import echo_handler

from .conftest import (
    OPENSSL,
    Configure,
    fix_buffers,
    jump_when_blocked,
    needs_openssl,
    read_at_least,
    read_line_containing,
    round_trip,
    serving_port,
    trusting,
    with_cert,
)

NOW = datetime.datetime.now(datetime.UTC)
YESTERDAY = NOW - datetime.timedelta(days=1)
TOMORROW = NOW + datetime.timedelta(days=1)

# ----------------------------------------------------------------------------
# Certificates


@pytest.fixture(scope="module")
def client_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("client@example.org")


def self_signed(host: str, not_after: datetime.datetime = TOMORROW) -> tuple[bytes, bytes]:
    """``(key_pem, cert_pem)`` of a self-signed certificate for *host*."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(YESTERDAY - datetime.timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def revocation_list(ca: trustme.CA, *revoked: trustme.LeafCert) -> bytes:
    """A CRL signed by *ca* that revokes *revoked*, in PEM."""
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(YESTERDAY)
        .next_update(TOMORROW)
    )
    for leaf in revoked:
        serial = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(YESTERDAY).build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode("ascii"))


# ----------------------------------------------------------------------------
# Settings


def test_tls_settings_make_a_socket_secure(tmp_path: Path) -> None:
    setters: list[Callable[[RSocket], None]] = [
        lambda sock: sock.set_certs(authority=str(tmp_path / "ca.pem")),
        lambda sock: sock.set_tls(),
        lambda sock: sock.set_verify(False, False),
        lambda sock: sock.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256"),
        lambda sock: sock.set_alpn("h2"),
        lambda sock: sock.set_ssl_context(ssl.create_default_context()),
    ]
    for setter in setters:
        sock = RSocket()
        assert not sock.is_secure()
        setter(sock)
        assert sock.is_secure()
        sock.reset()
        assert sock.is_secure()


def test_module_defaults_do_not_make_a_socket_secure(ca: trustme.CA) -> None:
    set_default_certs(authority=ca.cert_pem.bytes())
    assert not RSocket().is_secure()


def test_tls_details_are_none_without_a_handshake() -> None:
    sock = RSocket()
    sock.set_tls()
    assert sock.get_alpn() is None
    assert sock.get_cipher() is None
    assert sock.get_tls_version() is None
    assert sock.get_peer_certificate() is None


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda s: s.set_certs(cert=42), TypeError, "cert must be a file path"),
        (lambda s: s.set_certs(key="-----BEGIN PRIVATE KEY-----\n"), TypeError, "key looks like PEM text"),
        (lambda s: s.set_certs(authority=""), ValueError, "authority must be a file path"),
        (lambda s: s.set_certs(revoke=b""), ValueError, "revoke must not be empty"),
        (lambda s: s.set_ciphers(b"AES"), TypeError, "ciphers must be a str"),
        (lambda s: s.set_verify("yes", True), TypeError, "verify_peer must be a bool"),
        (lambda s: s.set_alpn(["h2", 2]), TypeError, "protocols must be str"),
        (lambda s: s.set_alpn("x" * 256), ValueError, "1 to 255 bytes"),
        (lambda s: s.set_alpn([]), ValueError, "at least one protocol"),
        (lambda s: s.set_ssl_context("tls"), TypeError, "context must be an ssl.SSLContext"),
    ],
)
def test_bad_tls_arguments_fail_at_once_naming_the_argument(
    call: Callable[[RSocket], None], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        call(RSocket())


# ----------------------------------------------------------------------------
# Configuration errors: at connect or listen time, before any I/O


def _missing(tmp: Path, cert: trustme.LeafCert) -> Configure:
    return lambda s: s.set_certs(key=str(tmp / "missing.key"), cert=cert.cert_chain_pems[0].bytes())


@pytest.mark.parametrize(
    ("configure", "words"),
    [
        (
            lambda tmp, cert, other: _missing(tmp, cert),
            r"Unable to read key .*missing\.key: No such file or directory",
        ),
        (
            lambda tmp, cert, other: lambda s: s.set_certs(key=cert.private_key_pem.bytes(), cert=str(tmp / "no.pem")),
            r"Unable to read certificate .*no\.pem",
        ),
        (
            lambda tmp, cert, other: (
                lambda s: s.set_certs(key=other.private_key_pem.bytes(), cert=cert.cert_chain_pems[0].bytes())
            ),
            "Check of private key file failed: .*does not match certificate",
        ),
        (
            lambda tmp, cert, other: lambda s: s.set_certs(key=cert.private_key_pem.bytes(), cert=b"not a certificate"),
            "Unable to load certificate",
        ),
        (
            lambda tmp, cert, other: lambda s: s.set_certs(key=b"not a key", cert=cert.cert_chain_pems[0].bytes()),
            "Unable to load key",
        ),
        (
            lambda tmp, cert, other: lambda s: s.set_certs(authority=str(tmp / "ca.pem")),
            r"Unable to read certificate authority .*ca\.pem",
        ),
        (
            lambda tmp, cert, other: lambda s: s.set_certs(authority=b"-----BEGIN CERTIFICATE-----\nAAAA\n"),
            "Unable to load certificate authority",
        ),
        (
            lambda tmp, cert, other: lambda s: s.set_certs(revoke=b"not a CRL"),
            "Cannot load certificate revoke list",
        ),
        (
            lambda tmp, cert, other: lambda s: s.set_certs(revoke=other.cert_chain_pems[0].bytes()),
            "Cannot load certificate revoke list: .* must hold PEM CRLs only",
        ),
        (
            lambda tmp, cert, other: lambda s: s.set_ciphers("NO-SUCH-CIPHER"),
            'Unable to define ciphers "NO-SUCH-CIPHER"',
        ),
        (lambda tmp, cert, other: lambda s: s.set_ciphers("TLS_NO_SUCH_SUITE"), "unknown TLS 1.3 suite"),
        (lambda tmp, cert, other: lambda s: s.set_certs(key=cert.private_key_pem.bytes()), "without a certificate"),
    ],
    ids=[
        "missing-key-file",
        "missing-cert-file",
        "key-not-matching-cert",
        "bad-cert",
        "bad-key",
        "missing-authority-file",
        "bad-authority",
        "bad-revocation-list",
        "certificate-as-revocation-list",
        "bad-cipher-string",
        "unknown-tls13-suite",
        "key-without-cert",
    ],
)
@pytest.mark.usefixtures("no_fd_leak")
async def test_client_configuration_error_comes_before_any_connection(
    tmp_path: Path,
    server_cert: trustme.LeafCert,
    configure: Callable[[Path, trustme.LeafCert, trustme.LeafCert], Configure],
    words: str,
) -> None:
    other = trustme.CA().issue_cert("localhost")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        listening.setblocking(False)
        sock = RSocket()
        configure(tmp_path, server_cert, other)(sock)
        with pytest.raises(TLSError, match=words) as caught:
            await sock.connect("127.0.0.1", listening.getsockname()[1])
        with pytest.raises(BlockingIOError):
            listening.accept()  # nothing ever connected
    assert sock.get_error() == str(caught.value)
    assert not sock.is_connected()
    assert sock.get_handle() == -1


@pytest.mark.parametrize(
    ("configure", "words"),
    [
        (lambda tmp, cert: lambda s: s.set_tls(), "A TLS listener needs a certificate and key"),
        (lambda tmp, cert: _missing(tmp, cert), r"Unable to read key .*missing\.key"),
        (
            lambda tmp, cert: lambda s: (with_cert(cert)(s), s.set_verify(True, False)),
            "cannot accept client certificates from unknown issuers",
        ),
        (
            lambda tmp, cert: lambda s: s.set_ssl_context(ssl.create_default_context()),
            "client context .* to a listening socket",
        ),
    ],
    ids=["no-certificate", "missing-key-file", "verify-issuer-off", "client-context"],
)
async def test_listener_configuration_error_comes_before_binding(
    tmp_path: Path, server_cert: trustme.LeafCert, configure: Callable[[Path, trustme.LeafCert], Configure], words: str
) -> None:
    sock = RSocket()
    configure(tmp_path, server_cert)(sock)
    async with trio.open_nursery() as nursery:
        with pytest.raises(TLSError, match=words):
            await sock.listen("127.0.0.1", 0, echo_handler, nursery=nursery)
    assert sock.get_handle() == -1
    assert sock.get_error()


# ----------------------------------------------------------------------------
# Client verification, in Ioto's words


async def test_client_verifies_the_server_against_an_authority_in_pem_bytes(
    ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    async with serving_port(with_cert(server_cert)) as port, RSocket() as client:
        client.set_certs(authority=ca.cert_pem.bytes())
        await client.connect("localhost", port)
        assert client.is_secure()
        assert await round_trip(client) == b"ping"
        assert client.get_peer_certificate() == der(server_cert)


async def test_certificates_and_authority_load_from_paths(
    tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    server_cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    server_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    def configure(listener: RSocket) -> None:
        listener.set_certs(key=str(tmp_path / "server.key"), cert=tmp_path / "server.pem")

    async with serving_port(configure) as port, RSocket() as client:
        client.set_certs(authority=tmp_path / "ca.pem")
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"


async def test_key_defaults_to_the_certificate_file(
    tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "both.pem"))
    async with serving_port(lambda s: s.set_certs(cert=str(tmp_path / "both.pem"))) as port, RSocket() as client:
        trusting(ca)(client)
        await client.connect("127.0.0.1", port)
        assert await round_trip(client) == b"ping"


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param(lambda chain: chain, id="leaf-and-intermediate"),
        pytest.param(lambda chain: b"# the server's chain\n" + chain + b"trailing words\n", id="text-around"),
        pytest.param(lambda chain: "# le certificat de l'hôte\n".encode() + chain, id="non-ascii-comment"),
    ],
)
async def test_a_certificate_file_is_read_as_openssl_reads_it(ca: trustme.CA, layout: Callable[[bytes], bytes]) -> None:
    # The server sends the intermediate from the same file, or the client,
    # which trusts only the root, refuses the handshake.
    leaf = ca.create_child_ca().issue_cert("localhost")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)

    def configure(listener: RSocket) -> None:
        listener.set_certs(key=leaf.private_key_pem.bytes(), cert=layout(chain))

    async with serving_port(configure) as port, RSocket() as client:
        trusting(ca)(client)
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"


async def test_a_certificate_file_cut_short_is_the_certificates_fault(server_cert: trustme.LeafCert) -> None:
    # cryptography skips a last block cut short; OpenSSL fails the chain, and
    # would say so as if the key were at fault.
    whole = server_cert.cert_chain_pems[0].bytes()
    sock = RSocket()
    sock.set_certs(key=server_cert.private_key_pem.bytes(), cert=whole + whole[: len(whole) // 2])
    async with trio.open_nursery() as nursery:
        with pytest.raises(TLSError, match=r"^Unable to load certificate \(cert given as PEM bytes\)$"):
            await sock.listen("127.0.0.1", 0, echo_handler, nursery=nursery)


async def test_client_verifies_with_the_default_authority(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    set_default_certs(authority=ca.cert_pem.bytes())
    async with serving_port(with_cert(server_cert)) as port, RSocket() as client:
        client.set_tls()
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"


def _expired(ca: trustme.CA) -> Configure:
    return with_cert(ca.issue_cert("localhost", not_after=YESTERDAY))


def _self_signed(ca: trustme.CA) -> Configure:
    key, cert = self_signed("localhost")
    return lambda s: s.set_certs(key=key, cert=cert)


def _unknown_issuer(ca: trustme.CA) -> Configure:
    return with_cert(trustme.CA().issue_cert("localhost"))


def _other_host(ca: trustme.CA) -> Configure:
    return with_cert(ca.issue_cert("example.org"))


def _not_yet_valid(ca: trustme.CA) -> Configure:
    return with_cert(ca.issue_cert("localhost", not_before=TOMORROW, not_after=TOMORROW + datetime.timedelta(days=1)))


FAILURES = [
    pytest.param(_expired, "Certificate has expired", id="expired"),
    pytest.param(_self_signed, "Self-signed certificate", id="self-signed"),
    pytest.param(_unknown_issuer, "Certificate not trusted", id="unknown-issuer"),
    pytest.param(_other_host, "Certificate hostname mismatch. Expecting localhost", id="hostname-mismatch"),
    pytest.param(_not_yet_valid, "Certificate is not yet valid", id="not-yet-valid"),
]


@pytest.mark.usefixtures("no_fd_leak")
@pytest.mark.parametrize(("server", "words"), FAILURES)
async def test_client_verification_failure_says_why(
    ca: trustme.CA, server: Callable[[trustme.CA], Configure], words: str
) -> None:
    async with serving_port(server(ca)) as port:
        client = RSocket()
        trusting(ca)(client)
        with pytest.raises(TLSError) as caught:
            await client.connect("localhost", port)
        assert str(caught.value) == words
        assert client.get_error() == words


async def test_client_rejects_a_revoked_certificate(ca: trustme.CA) -> None:
    revoked = ca.issue_cert("localhost")
    async with serving_port(with_cert(revoked)) as port:
        client = RSocket()
        client.set_certs(authority=ca.cert_pem.bytes(), revoke=revocation_list(ca, revoked))
        with pytest.raises(TLSError, match=r"^Certificate revoked$"):
            await client.connect("localhost", port)


async def test_a_revocation_list_accepts_certificates_it_does_not_name(
    tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    (tmp_path / "ca.crl").write_bytes(revocation_list(ca, ca.issue_cert("localhost")))
    async with serving_port(with_cert(server_cert)) as port, RSocket() as client:
        client.set_certs(authority=ca.cert_pem.bytes(), revoke=str(tmp_path / "ca.crl"))
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"


async def test_a_revocation_list_from_another_issuer_is_refused(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    stranger = trustme.CA()
    async with serving_port(with_cert(server_cert)) as port:
        client = RSocket()
        client.set_certs(authority=ca.cert_pem.bytes(), revoke=revocation_list(stranger, stranger.issue_cert("x")))
        with pytest.raises(TLSError, match=r"^Certificate revocation list not found for the issuer$"):
            await client.connect("localhost", port)


@pytest.mark.usefixtures("no_fd_leak")
async def test_failed_handshake_leaves_the_socket_unconnected_and_reusable(
    ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    client = RSocket()
    trusting(ca)(client)
    async with serving_port(_unknown_issuer(ca)) as bad_port:
        with pytest.raises(TLSError):
            await client.connect("localhost", bad_port)
    assert not client.is_connected()
    assert not client.is_closed()
    assert client.get_handle() == -1
    assert client.is_secure()
    async with serving_port(with_cert(server_cert)) as good_port:
        await client.connect("localhost", good_port)
        assert await round_trip(client) == b"ping"
        assert client.get_error() == ""
        await client.aclose()


async def test_verify_issuer_off_accepts_a_self_signed_certificate(ca: trustme.CA) -> None:
    async with serving_port(_self_signed(ca)) as port, RSocket() as client:
        client.set_verify(True, False)
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"


async def test_verify_issuer_off_accepts_an_unknown_issuer(ca: trustme.CA) -> None:
    async with serving_port(_unknown_issuer(ca)) as port, RSocket() as client:
        client.set_verify(True, False)
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"


@pytest.mark.parametrize(
    ("server", "words"),
    [
        # Unknown issuers on purpose: full verification would report the
        # issuer first, so these words come from the checks verify_issuer=False keeps.
        pytest.param(
            lambda: with_cert(trustme.CA().issue_cert("localhost", not_after=YESTERDAY)),
            "Certificate has expired",
            id="expired",
        ),
        pytest.param(
            lambda: with_cert(trustme.CA().issue_cert("example.org", "*.example.org", "127.0.0.1")),
            "Certificate hostname mismatch. Expecting localhost got example.org, *.example.org, 127.0.0.1",
            id="hostname-mismatch",
        ),
        pytest.param(
            lambda: (lambda k_c: lambda s: s.set_certs(key=k_c[0], cert=k_c[1]))(self_signed("localhost", YESTERDAY)),
            "Certificate has expired",
            id="self-signed-expired",
        ),
    ],
)
async def test_verify_issuer_off_still_rejects(server: Callable[[], Configure], words: str) -> None:
    async with serving_port(server()) as port:
        client = RSocket()
        client.set_verify(True, False)
        with pytest.raises(TLSError) as caught:
            await client.connect("localhost", port)
        assert str(caught.value) == words
        assert client.get_handle() == -1


async def test_verify_peer_off_checks_nothing() -> None:
    key, cert = self_signed("example.org", not_after=YESTERDAY)
    async with serving_port(lambda s: s.set_certs(key=key, cert=cert)) as port, RSocket() as client:
        client.set_verify(False, False)
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"


async def test_default_verify_applies_to_sockets_that_set_none(ca: trustme.CA) -> None:
    set_default_verify(False, False)
    async with serving_port(_unknown_issuer(ca)) as port, RSocket() as client:
        client.set_tls()
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"


async def test_socket_verify_overrides_the_default(ca: trustme.CA) -> None:
    set_default_verify(False, False)
    async with serving_port(_unknown_issuer(ca)) as port:
        client = RSocket()
        client.set_verify(True, True)
        with pytest.raises(TLSError, match="Certificate not trusted"):
            await client.connect("localhost", port)


async def test_client_checks_ip_address_hosts(ca: trustme.CA) -> None:
    async with serving_port(with_cert(ca.issue_cert("localhost"))) as port:
        client = RSocket()
        trusting(ca)(client)
        with pytest.raises(TLSError, match=r"Certificate hostname mismatch\. Expecting 127\.0\.0\.1"):
            await client.connect("127.0.0.1", port)


async def test_escape_hatch_context_is_used_as_it_is(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with serving_port(with_cert(server_cert)) as port, RSocket() as client:
        client.set_ssl_context(context)
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"


async def test_escape_hatch_context_errors_are_in_words(server_cert: trustme.LeafCert) -> None:
    async with serving_port(with_cert(server_cert)) as port:
        client = RSocket()
        client.set_ssl_context(ssl.create_default_context(cadata=trustme.CA().cert_pem.bytes().decode()))
        with pytest.raises(TLSError, match=r"^Certificate not trusted$"):
            await client.connect("localhost", port)


async def test_a_plain_server_is_not_speaking_tls() -> None:
    async def plain(_data: object, sock: RSocket) -> None:
        await sock.write(b"HTTP/1.0 400 Bad Request\r\n\r\n" * 4)

    async with trio.open_nursery() as nursery:
        listener = RSocket()
        await listener.listen("127.0.0.1", 0, plain, nursery=nursery)
        client = RSocket()
        client.set_tls()
        with pytest.raises(TLSError, match="TLS handshake failed: The peer is not speaking TLS"):
            await client.connect("127.0.0.1", listener.get_addr()[1])
        listener.close()


# ----------------------------------------------------------------------------
# Details of the connection


async def test_alpn_is_negotiated(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    seen: list[str | None] = []

    async def report(_data: object, sock: RSocket) -> None:
        seen.append(sock.get_alpn())
        await echo_handler(_data, sock)

    def configure(listener: RSocket) -> None:
        with_cert(server_cert)(listener)
        listener.set_alpn(["h2", "http/1.1"])

    async with serving_port(configure, report) as port, RSocket() as client:
        trusting(ca)(client)
        client.set_alpn(["spdy/1", "http/1.1"])
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"
        assert client.get_alpn() == "http/1.1"
    assert seen == ["http/1.1"]


async def test_alpn_without_a_shared_protocol_is_none(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    def configure(listener: RSocket) -> None:
        with_cert(server_cert)(listener)
        listener.set_alpn("h2")

    async with serving_port(configure) as port, RSocket() as client:
        trusting(ca)(client)
        client.set_alpn("http/1.1")
        await client.connect("localhost", port)
        assert client.get_alpn() is None


async def test_cipher_and_version_are_reported(tls_pair: tuple[RSocket, RSocket]) -> None:
    client, server = tls_pair
    assert client.get_tls_version() == server.get_tls_version() == "TLSv1.3"
    assert client.get_cipher() == server.get_cipher()
    assert client.get_cipher() in {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}


async def test_ciphers_choose_the_tls12_cipher(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    server_cert.configure_cert(context)
    async with serving_port(lambda s: s.set_ssl_context(context)) as port, RSocket() as client:
        trusting(ca)(client)
        client.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256")
        await client.connect("localhost", port)
        assert client.get_tls_version() == "TLSv1.2"
        assert client.get_cipher() == "ECDHE-ECDSA-AES128-GCM-SHA256"


async def test_default_ciphers_apply_to_sockets_that_set_none(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    set_default_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    server_cert.configure_cert(context)
    async with serving_port(lambda s: s.set_ssl_context(context)) as port, RSocket() as client:
        trusting(ca)(client)
        await client.connect("localhost", port)
        assert client.get_cipher() == "ECDHE-ECDSA-AES256-GCM-SHA384"


# ----------------------------------------------------------------------------
# Mutual TLS


def _mutual(ca: trustme.CA, cert: trustme.LeafCert) -> Configure:
    def configure(listener: RSocket) -> None:
        with_cert(cert)(listener)
        listener.set_certs(authority=ca.cert_pem.bytes())
        listener.set_verify(True, True)

    return configure


async def test_mutual_tls_accepts_a_client_certificate_from_the_authority(
    ca: trustme.CA, server_cert: trustme.LeafCert, client_cert: trustme.LeafCert
) -> None:
    seen: list[bytes | None] = []

    async def report(_data: object, sock: RSocket) -> None:
        seen.append(sock.get_peer_certificate())
        await echo_handler(_data, sock)

    async with serving_port(_mutual(ca, server_cert), report) as port, RSocket() as client:
        with_cert(client_cert)(client)
        trusting(ca)(client)
        await client.connect("localhost", port)
        assert await round_trip(client) == b"ping"
    assert seen == [der(client_cert)]


@pytest.mark.parametrize(
    ("client_setup", "server_words", "client_words"),
    [
        pytest.param(lambda: None, "No certificate provided", "The peer requires a certificate", id="no-certificate"),
        pytest.param(
            lambda: trustme.CA().issue_cert("client@example.org"),
            "Certificate not trusted",
            "The peer does not trust the certificate's issuer",
            id="unknown-issuer",
        ),
    ],
)
async def test_mutual_tls_rejects_a_client_and_keeps_serving(
    ca: trustme.CA,
    server_cert: trustme.LeafCert,
    client_cert: trustme.LeafCert,
    caplog: pytest.LogCaptureFixture,
    client_setup: Callable[[], trustme.LeafCert | None],
    server_words: str,
    client_words: str,
) -> None:
    async with serving_port(_mutual(ca, server_cert)) as port:
        async with RSocket() as rejected:
            trusting(ca)(rejected)
            cert = client_setup()
            if cert is not None:
                with_cert(cert)(rejected)
            # TLS 1.3 clients finish their side before the server has checked
            # their certificate, so the refusal arrives with the first read.
            await rejected.connect("localhost", port)
            with pytest.raises(trio.BrokenResourceError, match=client_words):
                await rejected.read()
            assert client_words in rejected.get_error()

        async with RSocket() as accepted:
            with_cert(client_cert)(accepted)
            trusting(ca)(accepted)
            await accepted.connect("localhost", port)
            assert await round_trip(accepted) == b"ping"
    assert f"failed: {server_words}" in caplog.text


@pytest.mark.parametrize(
    ("client_verify", "words"),
    [
        # The listener wants a client certificate; the client has none.
        pytest.param(False, "TLS handshake failed: No certificate provided", id="no-client-certificate"),
        # The client refuses the server and says so in its alert.
        pytest.param(True, "TLS handshake failed: The peer does not trust the certificate's issuer", id="client-alert"),
    ],
)
async def test_server_handshake_failure_is_a_tls_error_in_words(
    ca: trustme.CA, server_cert: trustme.LeafCert, client_verify: bool, words: str
) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    async with listener, RSocket() as client, trio.open_nursery() as nursery:
        # A verifying client trusts another CA, so it refuses the server.
        client.set_verify(client_verify, client_verify)
        client.set_certs(authority=trustme.CA().cert_pem.bytes())

        async def connect() -> None:
            # Refused or not (TLS 1.3 clients finish first), the server side is what is tested.
            with contextlib.suppress(TLSError):
                await client.connect("localhost", listener.socket.getsockname()[1])

        nursery.start_soon(connect)
        server = RSocket.from_socket(await listener.accept(), server_side=True)
        _mutual(ca, server_cert)(server)
        with pytest.raises(TLSError) as caught:
            await server.upgrade_tls()
        assert str(caught.value) == words
        assert server.is_closed()
        assert server.get_error() == words


# ----------------------------------------------------------------------------
# Stream behaviour, deadlines and cancellation


async def test_aclose_sends_close_notify_so_the_peer_reads_end_of_file(tls_pair: tuple[RSocket, RSocket]) -> None:
    client, server = tls_pair
    await client.aclose()
    assert await server.read() == b""
    assert server.is_eof()


async def test_close_is_immediate_so_the_peer_sees_a_truncated_stream(tls_pair: tuple[RSocket, RSocket]) -> None:
    client, server = tls_pair
    client.close()
    with pytest.raises(trio.BrokenResourceError, match="TLS connection broken"):
        await server.read()


async def test_close_wakes_a_blocked_tls_write(tls_pair: tuple[RSocket, RSocket]) -> None:
    client, server = tls_pair
    fix_buffers(client, server)

    async def close_when_blocked() -> None:
        await trio.testing.wait_all_tasks_blocked()
        client.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_when_blocked)
        with pytest.raises(trio.ClosedResourceError):
            await client.write(b"x" * (4 << 20))


@pytest.mark.usefixtures("no_fd_leak")
async def test_tls_handshake_runs_within_the_connect_deadline(mock_clock: trio.testing.MockClock) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    silent: list[trio.SocketStream] = []
    hello: list[bytes] = []

    async def accept_and_never_answer() -> None:
        silent.append(await listener.accept())
        hello.append(await silent[0].receive_some())
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(10)

    async with listener:
        client = RSocket()
        client.set_tls()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_and_never_answer)
            with pytest.raises(DeadlineError):
                await client.connect("localhost", listener.socket.getsockname()[1], trio.current_time() + 10)
        await silent[0].aclose()
    assert hello[0][:1] == b"\x16"  # the ClientHello went out: the deadline caught the handshake
    assert not client.is_connected()
    assert client.get_handle() == -1


async def test_tls_read_deadline_loses_nothing(
    mock_clock: trio.testing.MockClock, tls_pair: tuple[RSocket, RSocket]
) -> None:
    client, server = tls_pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(jump_when_blocked, mock_clock, 5)
        with pytest.raises(DeadlineError):
            await client.read(deadline=trio.current_time() + 5)
    await server.write(b"after the deadline")
    assert await client.read_exactly(18) == b"after the deadline"


async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    while data := await source.receive_some():
        await sink.send_all(data)


async def test_tls_read_deadline_keeps_half_a_record(
    mock_clock: trio.testing.MockClock, ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    """A relay between the two ends holds back the tail of a record, so the
    deadline passes while half a record is inside the TLS layer."""
    server_side = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    relay_side = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    message = b"m" * 1000
    to_server, to_client = trio.CancelScope(), trio.CancelScope()

    async def pump(source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope) -> None:
        with scope:
            while data := await source.receive_some():
                await sink.send_all(data)

    async with server_side, relay_side, RSocket() as client, trio.open_nursery() as relay:
        trusting(ca)(client)
        async with trio.open_nursery() as handshakes:
            handshakes.start_soon(client.connect, "localhost", relay_side.socket.getsockname()[1])
            downstream = await relay_side.accept()
            upstream = await trio.open_tcp_stream("127.0.0.1", server_side.socket.getsockname()[1])
            server = RSocket.from_socket(await server_side.accept(), server_side=True)
            with_cert(server_cert)(server)
            relay.start_soon(pump, downstream, upstream, to_server)
            relay.start_soon(pump, upstream, downstream, to_client)
            await server.upgrade_tls()
        try:
            # Both handshakes are done and the relay is idle in receive_some:
            # stopping it there loses nothing.
            await trio.testing.wait_all_tasks_blocked()
            to_client.cancel()
            await server.write(message)
            held = await upstream.receive_some()
            await downstream.send_all(held[:-10])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(jump_when_blocked, mock_clock, 5)
                with pytest.raises(DeadlineError):
                    await client.read(deadline=trio.current_time() + 5)
            await downstream.send_all(held[-10:])
            to_client = trio.CancelScope()
            relay.start_soon(pump, upstream, downstream, to_client)
            assert await client.read_exactly(len(message)) == message
        finally:
            to_server.cancel()
            to_client.cancel()
            server.close()
            await upstream.aclose()
            await downstream.aclose()


async def write_past_its_deadline(
    clock: trio.testing.MockClock, client: RSocket, server: RSocket, data: bytes
) -> DeadlineError:
    """The :exc:`DeadlineError` of ``client.write(data)`` with a deadline 5
    seconds ahead, which passes (the clock jumps) once the write waits for
    *server* to read: the buffers are fixed at 64 KiB, so a few MiB wait."""
    fix_buffers(client, server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(jump_when_blocked, clock, 5)
        with pytest.raises(DeadlineError) as caught:
            await client.write(data, deadline=trio.current_time() + 5)
    return caught.value


@pytest.mark.usefixtures("no_fd_leak")
async def test_tls_write_deadline_counts_exactly_what_the_peer_can_decrypt(
    mock_clock: trio.testing.MockClock, tls_pair: tuple[RSocket, RSocket]
) -> None:
    client, server = tls_pair
    data = bytes(range(256)) * (1 << 14)  # 4 MiB: far more than the buffers hold
    written = (await write_past_its_deadline(mock_clock, client, server, data)).bytes_written
    assert 0 < written < len(data)
    assert written % _secure.RECORD_SIZE == 0
    # The deadline stopped a record half-way: the stream is broken for good.
    with pytest.raises(trio.BrokenResourceError):
        await client.write(b"more")
    client.close()
    assert await read_at_least(server, written) == data[:written]
    # What is left is half a record and the end of the connection.
    with pytest.raises(trio.BrokenResourceError):
        await server.read()


@pytest.mark.usefixtures("no_fd_leak")
async def test_after_a_tls_write_stopped_mid_record_later_calls_say_why_it_broke(
    mock_clock: trio.testing.MockClock, tls_pair: tuple[RSocket, RSocket]
) -> None:
    client, server = tls_pair
    await write_past_its_deadline(mock_clock, client, server, b"x" * (4 << 20))
    for _ in range(2):  # and it stays said
        with pytest.raises(trio.BrokenResourceError) as later:
            await client.write(b"more")
        assert "stopped in the middle of a TLS record" in str(later.value)
        assert client.get_error() == str(later.value)


@pytest.mark.usefixtures("no_fd_leak")
async def test_a_tls_write_cancelled_from_outside_counts_the_whole_records_the_peer_can_decrypt(
    mock_clock: trio.testing.MockClock, tls_pair: tuple[RSocket, RSocket]
) -> None:
    # An enclosing cancel scope, not the write's own deadline: the count is
    # exact all the same (see "Write" in docs/tls.rst).
    client, server = tls_pair
    fix_buffers(client, server)
    await client.write(b"first")
    data = bytes(range(256)) * (1 << 14)  # 4 MiB: far more than the buffers hold
    async with trio.open_nursery() as nursery:
        nursery.start_soon(jump_when_blocked, mock_clock, 5)
        with trio.move_on_after(5) as outer:
            await client.write(data)
    assert outer.cancelled_caught
    written = client.statistics().bytes_written - len(b"first")
    assert 0 < written < len(data)
    assert written % _secure.RECORD_SIZE == 0
    with pytest.raises(trio.BrokenResourceError, match="broken earlier"):
        await client.write(b"more")
    client.close()
    assert await server.read_exactly(len(b"first")) == b"first"
    assert await read_at_least(server, written) == data[:written]


# ----------------------------------------------------------------------------
# Listener handshakes


@pytest.mark.usefixtures("no_fd_leak")
async def test_listener_drops_a_client_that_never_finishes_its_handshake(
    mock_clock: trio.testing.MockClock,
    ca: trustme.CA,
    server_cert: trustme.LeafCert,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving_port(with_cert(server_cert), handshake_timeout=10) as port:
        silent = await trio.open_tcp_stream("127.0.0.1", port)
        async with RSocket() as served:
            trusting(ca)(served)
            await served.connect("localhost", port)
            assert await round_trip(served) == b"ping"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(jump_when_blocked, mock_clock, 10)
            assert await silent.receive_some() == b""
        await silent.aclose()
    assert "did not finish within 10" in caplog.text


# ----------------------------------------------------------------------------
# Interoperability with peers nobody here wrote


async def test_client_talks_to_pythons_blocking_ssl_server(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(context)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        listening.settimeout(30)  # a safety net for the thread, never reached

        def serve_one() -> bytes:
            connection, _ = listening.accept()
            with context.wrap_socket(connection, server_side=True) as tls:
                message = tls.recv(1024)
                tls.sendall(message.upper())
                tls.recv(1024)  # our close_notify
                return message

        received: list[bytes] = []

        async def server() -> None:
            received.append(await trio.to_thread.run_sync(serve_one))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            client = RSocket()
            trusting(ca)(client)
            await client.connect("localhost", listening.getsockname()[1])
            assert await round_trip(client, b"hello") == b"HELLO"
            await client.aclose()
    assert received == [b"hello"]


async def test_pythons_blocking_ssl_client_talks_to_the_listener(
    ca: trustme.CA, server_cert: trustme.LeafCert, client_cert: trustme.LeafCert
) -> None:
    def client(port: int) -> bytes:
        context = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode("ascii"))
        client_cert.configure_cert(context)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"hello")
            answer = tls.recv(1024)
            tls.unwrap()
            return answer

    async with serving_port(_mutual(ca, server_cert)) as port:
        assert await trio.to_thread.run_sync(client, port) == b"hello"


@needs_openssl
async def test_client_talks_to_openssl_s_server(tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    assert OPENSSL is not None
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    command = [OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-cert", str(tmp_path / "server.pem"), "-naccept", "1"]
    command += ["-rev", "-alpn", "h2,http/1.1"]
    process = await trio.lowlevel.open_process(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        accept = await read_line_containing(process.stdout, b"ACCEPT")
        port = int(accept.split(b":")[-1])
        async with RSocket() as client:
            trusting(ca)(client)
            client.set_alpn(["http/1.1"])
            await client.connect("localhost", port)
            assert client.get_alpn() == "http/1.1"
            await client.write(b"hello\n")
            assert await client.read_until(b"\n") == b"olleh\n"
        assert await process.wait() == 0
    finally:
        process.kill()
        await process.wait()


@needs_openssl
async def test_openssl_s_client_talks_to_the_listener(
    tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    assert OPENSSL is not None
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    def configure(listener: RSocket) -> None:
        with_cert(server_cert)(listener)
        listener.set_alpn("h2")

    async with serving_port(configure) as port:
        command = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost"]
        command += ["-CAfile", str(tmp_path / "ca.pem"), "-verify_return_error", "-quiet", "-no_ign_eof", "-alpn", "h2"]
        process = await trio.lowlevel.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert process.stdin is not None
            assert process.stdout is not None
            await process.stdin.send_all(b"hello from openssl\n")
            assert await read_line_containing(process.stdout, b"hello") == b"hello from openssl\n"
            await process.stdin.aclose()
            assert await process.wait() == 0
        finally:
            process.kill()
            await process.wait()


# ----------------------------------------------------------------------------
# The names check of verify_issuer=False (_tls_leaf)


def _leaf_der(*names: x509.GeneralName, common_name: str | None = None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(YESTERDAY)
        .not_valid_after(TOMORROW)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("certificate", "host", "matches"),
    [
        (lambda: _leaf_der(x509.DNSName("*.example.org")), "www.example.org", True),
        # A trailing dot: refused, as full verification does.
        (lambda: _leaf_der(x509.DNSName("*.example.org")), "WWW.Example.Org.", False),
        (lambda: _leaf_der(x509.DNSName("*.example.org")), "example.org", False),
        (lambda: _leaf_der(x509.DNSName("*.example.org")), "a.www.example.org", False),
        (lambda: _leaf_der(x509.DNSName("*.org")), "example.org", False),
        (lambda: _leaf_der(x509.DNSName("w*.example.org")), "www.example.org", False),
        (lambda: _leaf_der(common_name="example.org"), "example.org", True),
        (lambda: _leaf_der(x509.DNSName("other.org"), common_name="example.org"), "example.org", False),
        (lambda: _leaf_der(x509.DNSName("xn--bcher-kva.example")), "bücher.example", True),
        (lambda: _leaf_der(x509.IPAddress(ipaddress.ip_address("::1"))), "::1", True),
        (lambda: _leaf_der(x509.DNSName("localhost")), "127.0.0.1", False),
    ],
)
def test_hostname_rules_of_the_issuer_free_check(certificate: Callable[[], bytes], host: str, matches: bool) -> None:
    if matches:
        _tls.check_peer(certificate(), host)
    else:
        with pytest.raises(TLSError, match="Certificate hostname mismatch"):
            _tls.check_peer(certificate(), host)


def test_an_unreadable_peer_certificate_is_a_tls_error() -> None:
    with pytest.raises(TLSError, match="Unable to parse"):
        _tls.check_peer(b"\x30\x03\x02\x01", "localhost")
    with pytest.raises(TLSError, match="No certificate provided"):
        _tls.check_peer(None, "localhost")


def _ssl_error(message: str, library: str, reason: str | None) -> ssl.SSLError:
    """An SSLError as Python's ssl makes it: OpenSSL's library and reason
    by name (None where Python's table has no name), and the message."""
    error = ssl.SSLError(1, message)
    error.library, error.reason = library, reason  # type: ignore[assignment]
    return error


def test_alerts_python_has_no_reason_for_are_still_said_in_words() -> None:
    # Python 3.11's ssl has no name for some OpenSSL 3 alerts
    # (no_application_protocol from an ALPN mismatch, as a server may send
    # it): `reason` is None and only OpenSSL's text is left.
    error = _ssl_error("[SSL] tlsv1 alert no application protocol (_ssl.c:1006)", "SSL", None)
    broken = trio.BrokenResourceError("handshake")
    broken.__cause__ = error
    assert str(_tls.handshake_error(broken)) == "TLS handshake failed: No shared ALPN protocol"
    error = _ssl_error("[SSL] tlsv1 alert unknown psk identity (_ssl.c:1006)", "SSL", None)
    assert str(_tls.handshake_error(error)) == "TLS handshake failed: tlsv1 alert unknown psk identity"


def test_the_words_come_from_the_reason_python_names() -> None:
    # What went wrong is read from `reason`, whatever the message says.
    error = _ssl_error("[SSL: NO_SHARED_CIPHER] tlsv1 alert no application protocol", "SSL", "NO_SHARED_CIPHER")
    assert str(_tls.handshake_error(error)) == "TLS handshake failed: No shared cipher"
    error = _ssl_error("[SSL: SOME_NEW_REASON] some new reason (_ssl.c:1006)", "SSL", "SOME_NEW_REASON")
    assert str(_tls.broken_error(error)) == "TLS connection broken: some new reason"
    # Another library's text is not read as an SSL alert.
    error = _ssl_error("[PEM] tlsv1 alert no application protocol (_ssl.c:1006)", "PEM", None)
    assert "No shared ALPN protocol" not in str(_tls.handshake_error(error))
