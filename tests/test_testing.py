"""The pytest plugin (trio_rsocket.testing): its fixtures, run by pytester in a
suite of their own, and open_rsocket_pair used directly."""

from __future__ import annotations

import ssl
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest

# pytester runs the user suites in this process and afterwards drops the
# modules they imported; cryptography (under trustme) cannot be imported a
# second time in one process, so it is imported here, once, for them all.
import trustme  # noqa: F401

from trio_rsocket import RSocket
from trio_rsocket.testing import CertFiles, open_rsocket_pair

pytest_plugins = ["pytester"]

# The configuration of the suites pytester runs: the way a user's project
# would set up pytest-trio, with warnings as errors so that a socket the
# fixtures forgot to close (ResourceWarning) fails the run.  pytester runs
# them in this process, where the plugin is imported already and so cannot
# be assertion-rewritten: that one warning is expected.
PYTESTER_INI = """
[pytest]
trio_mode = true
filterwarnings =
    error
    ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning
"""


@pytest.fixture
def user_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(PYTESTER_INI)
    return pytester


def test_plugin_is_registered_through_the_pytest11_entry_point() -> None:
    plugins = {entry.name: entry.value for entry in entry_points(group="pytest11")}
    assert plugins.get("trio_rsocket") == "trio_rsocket.testing"


def test_importing_the_plugin_does_not_import_trustme() -> None:
    # Loaded into every pytest run of every project that installs
    # trio-rsocket: certificates are made only when a fixture asks.
    code = "import sys, trio_rsocket.testing; print(sorted({'trustme', 'cryptography'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_a_suite_using_every_fixture_passes(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_user=textwrap.dedent(
            """
            import pytest
            import trio
            import trustme

            from trio_rsocket import DeadlineError, RSocket, deadline_after
            from trio_rsocket.testing import CertFiles


            def test_ca_is_a_trustme_ca(rsocket_ca):
                assert isinstance(rsocket_ca, trustme.CA)


            def test_cert_files_are_pem_files(rsocket_cert_files):
                assert isinstance(rsocket_cert_files, CertFiles)
                for path in (rsocket_cert_files.authority, rsocket_cert_files.server_cert,
                             rsocket_cert_files.client_cert):
                    assert path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
                for path in (rsocket_cert_files.server_key, rsocket_cert_files.client_key):
                    assert b"PRIVATE KEY" in path.read_bytes()


            async def test_pair_carries_bytes_both_ways(rsocket_pair):
                client, server = rsocket_pair
                await client.write(b"ping")
                assert await server.read_exactly(4) == b"ping"
                await server.write(b"pong")
                assert await client.read_exactly(4) == b"pong"


            async def test_tls_pair_is_secure_and_carries_bytes(rsocket_tls_pair):
                client, server = rsocket_tls_pair
                assert client.is_secure() and server.is_secure()
                await client.write(b"secret")
                assert await server.read_exactly(6) == b"secret"
                await server.write(b"reply")
                assert await client.read_exactly(5) == b"reply"


            async def test_echo_server_echoes(rsocket_echo_server):
                async with RSocket() as sock:
                    await sock.connect(*rsocket_echo_server)
                    await sock.write(b"hello")
                    assert await sock.read_exactly(5) == b"hello"


            async def test_pair_works_with_the_autojump_clock(rsocket_pair, autojump_clock):
                client, _ = rsocket_pair
                with pytest.raises(DeadlineError):
                    await client.read(deadline=deadline_after(3600))
            """
        )
    )
    result = user_suite.runpytest()
    result.assert_outcomes(passed=6)


def test_a_connection_left_open_to_the_echo_server_is_reported(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_leak=textwrap.dedent(
            """
            import trio

            from trio_rsocket import RSocket

            kept = []


            async def test_keeps_a_connection_open(rsocket_echo_server):
                sock = RSocket()
                await sock.connect(*rsocket_echo_server)
                kept.append(sock)


            def teardown_module():
                for sock in kept:
                    trio.run(sock.aclose)
            """
        )
    )
    result = user_suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*rsocket_echo_server: 1 connection(s) were still open when the test ended*"])


def test_fixtures_say_how_to_install_trustme_when_it_is_missing(
    user_suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_suite.makepyfile(
        test_needs_certs=textwrap.dedent(
            """
            def test_uses_the_ca(rsocket_ca):
                pass
            """
        )
    )
    # pytester runs the suite in this process: make `import trustme` fail there.
    monkeypatch.setitem(sys.modules, "trustme", None)
    result = user_suite.runpytest()
    result.assert_outcomes(errors=1)
    assert "rsocket_ca needs trustme: pip install 'trio-rsocket[testing]'" in result.stdout.str()


async def test_open_rsocket_pair_carries_bytes_both_ways(no_fd_leak: None) -> None:
    async with open_rsocket_pair() as (client, server):
        await client.write(b"ping")
        assert await server.read_exactly(4) == b"ping"
        await server.write(b"pong")
        assert await client.read_exactly(4) == b"pong"


async def test_open_rsocket_pair_closes_both_sockets_on_exit(no_fd_leak: None) -> None:
    async with open_rsocket_pair() as (client, server):
        pass
    assert client.is_closed()
    assert server.is_closed()


async def test_open_rsocket_pair_with_tls_makes_its_own_certificates(no_fd_leak: None) -> None:
    async with open_rsocket_pair(tls=True) as (client, server):
        assert client.is_secure()
        assert server.is_secure()
        await client.write(b"secret")
        assert await server.read_exactly(6) == b"secret"


async def test_open_rsocket_pair_with_tls_uses_given_cert_files(rsocket_cert_files: CertFiles) -> None:
    async with open_rsocket_pair(tls=True, cert_files=rsocket_cert_files) as (client, server):
        await server.write(b"reply")
        assert await client.read_exactly(5) == b"reply"


async def test_open_rsocket_pair_closes_the_sockets_when_the_body_raises() -> None:
    sockets: list[RSocket] = []

    async def body_that_raises() -> None:
        async with open_rsocket_pair() as (client, server):
            sockets.extend((client, server))
            raise KeyError("from the body")

    with pytest.raises(KeyError):
        await body_that_raises()
    assert all(sock.is_closed() for sock in sockets)


async def test_open_rsocket_pair_rejects_a_tls_flag_that_is_not_a_bool() -> None:
    with pytest.raises(TypeError, match="tls must be a bool"):
        async with open_rsocket_pair(tls="yes"):  # type: ignore[arg-type]
            pass


async def test_pair_fixture_sockets_are_connected(rsocket_pair: tuple[RSocket, RSocket], no_fd_leak: None) -> None:
    client, server = rsocket_pair
    assert client.get_peer_addr() == server.get_addr()


async def test_tls_pair_fixture_presents_the_server_certificate_from_cert_files(
    rsocket_tls_pair: tuple[RSocket, RSocket], rsocket_cert_files: CertFiles, no_fd_leak: None
) -> None:
    client, _ = rsocket_tls_pair
    chain = rsocket_cert_files.server_cert.read_text()
    leaf = chain[: chain.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    assert client.get_peer_certificate() == ssl.PEM_cert_to_DER_cert(leaf)


async def test_echo_server_fixture_serves_several_clients(
    rsocket_echo_server: tuple[str, int], no_fd_leak: None
) -> None:
    for number in range(3):
        async with RSocket() as sock:
            await sock.connect(*rsocket_echo_server)
            await sock.write(b"%d" % number)
            assert await sock.read_exactly(1) == b"%d" % number
