"""The test helpers (trio_rsocket.testing, no pytest needed) used directly, and
the pytest plugin built on them (trio_rsocket.pytest_plugin): its fixtures,
run by pytester in suites of their own."""

from __future__ import annotations

import ssl
import subprocess
import sys
import tempfile
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import trio

# pytester runs the user suites in this process and afterwards drops the
# modules they imported; cryptography (under trustme) cannot be imported a
# second time in one process, so it is imported here, once, for them all.
import trustme  # noqa: F401

from trio_rsocket import RSocket
from trio_rsocket.testing import (
    CertFiles,
    echo_handler,
    make_cert_files,
    new_ca,
    open_rsocket_pair,
    open_rsocket_unix_pair,
)

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


# Bounds a subprocess that hangs; it times nothing.
PATIENCE = 60


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=PATIENCE)


def test_plugin_is_registered_through_the_pytest11_entry_point() -> None:
    plugins = {entry.name: entry.value for entry in entry_points(group="pytest11")}
    assert plugins.get("trio_rsocket") == "trio_rsocket.pytest_plugin"


@pytest.mark.parametrize("module", ["trio_rsocket.testing", "trio_rsocket.pytest_plugin"])
def test_importing_the_helpers_or_the_plugin_does_not_import_trustme(module: str) -> None:
    # The plugin is loaded into every pytest run of every project that
    # installs trio-rsocket: certificates are made only when a fixture asks.
    # (cryptography is the TLS room's own business, not checked here.)
    result = run_python(f"import sys, {module}; print('trustme' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_the_helpers_work_without_pytest() -> None:
    # sys.modules[name] = None makes `import name` fail, as if not installed.
    code = textwrap.dedent(
        """
        import sys, tempfile
        sys.modules["pytest"] = None
        import trio
        from trio_rsocket.testing import make_cert_files, new_ca, open_rsocket_pair

        async def main():
            with tempfile.TemporaryDirectory() as directory:
                files = make_cert_files(new_ca(), directory)
                async with open_rsocket_pair(tls=True, cert_files=files) as (client, server):
                    await client.write(b"no pytest")
                    print((await server.read_exactly(9)).decode(), client.is_secure())

        trio.run(main)
        print(sorted(name for name in sys.modules if name.startswith("_pytest")))
        """
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["no pytest True", "[]"]


def test_new_ca_without_trustme_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)
    with pytest.raises(ImportError, match=r"pip install '\.\[testing\]' in a clone of trio-rsocket"):
        new_ca()


def test_make_cert_files_writes_every_file(tmp_path: Path) -> None:
    files = make_cert_files(new_ca(), tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "ca.pem",
        "client.key",
        "client.pem",
        "server.key",
        "server.pem",
    ]
    context = ssl.create_default_context(cafile=str(files.authority))
    context.load_cert_chain(files.server_cert, files.server_key)
    context.load_cert_chain(files.client_cert, files.client_key)


async def test_echo_handler_sends_back_what_it_reads(no_fd_leak: None) -> None:
    listener = RSocket()
    async with trio.open_nursery() as nursery:
        await listener.listen("127.0.0.1", 0, echo_handler, nursery=nursery)
        async with RSocket() as client:
            await client.connect(*listener.get_addr())
            for message in (b"one", b"two" * 30000):
                await client.write(message)
                assert await client.read_exactly(len(message)) == message
            await client.send_eof()
            # The handler returns at end of file, and the listener closes the connection.
            assert await client.read() == b""
        listener.close()


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


            async def test_unix_pair_carries_bytes_both_ways(rsocket_unix_pair):
                client, server = rsocket_unix_pair
                assert not client.is_secure()
                await client.write(b"local")
                assert await server.read_exactly(5) == b"local"
                await server.write(b"reply")
                assert await client.read_exactly(5) == b"reply"
            """
        )
    )
    result = user_suite.runpytest()
    result.assert_outcomes(passed=7)


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
    assert "rsocket_ca: throwaway certificates need trustme: pip install '.[testing]'" in result.stdout.str()


def test_naming_the_helpers_module_as_a_plugin_still_brings_the_fixtures(
    user_suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Suites written when the fixtures lived in trio_rsocket.testing, with
    # plugin autoloading off, name that module; they keep working.
    user_suite.makepyfile(
        test_old_name=textwrap.dedent(
            """
            async def test_pair(rsocket_pair):
                client, server = rsocket_pair
                await client.write(b"old")
                assert await server.read_exactly(3) == b"old"
            """
        )
    )
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = user_suite.runpytest_subprocess("-p", "pytest_trio.plugin", "-p", "trio_rsocket.testing")
    result.assert_outcomes(passed=1)


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


async def test_open_rsocket_unix_pair_carries_bytes_both_ways(no_fd_leak: None) -> None:
    async with open_rsocket_unix_pair() as (client, server):
        await client.write(b"ping")
        assert await server.read_exactly(4) == b"ping"
        # More than a Unix socket's buffer holds: written while it is read.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.write, b"pong" * 100_000)
            assert await client.read_exactly(400_000) == b"pong" * 100_000


async def test_open_rsocket_unix_pair_is_over_a_unix_socket_in_a_short_directory_of_its_own(
    no_fd_leak: None,
) -> None:
    async with open_rsocket_unix_pair() as (client, server):
        # A Unix socket's address is a path (a TCP one, a host): the server's,
        # in a fresh directory in the temporary folder.
        path, port = server.get_addr()
        assert port == 0
        assert isinstance(path, str)
        directory = Path(path).parent
        assert directory.name.startswith("rsocket-")
        assert directory.parent == Path(tempfile.gettempdir())
        assert client.get_peer_addr() == server.get_addr()
        # The client's end has no name.
        assert client.get_addr() == ("", 0)


async def test_open_rsocket_unix_pair_closes_both_sockets_and_removes_its_directory(no_fd_leak: None) -> None:
    async with open_rsocket_unix_pair() as (client, server):
        directory = Path(server.get_addr()[0]).parent
        assert directory.is_dir()
    assert client.is_closed()
    assert server.is_closed()
    assert not directory.exists()


async def test_open_rsocket_unix_pair_cleans_up_when_the_body_raises(no_fd_leak: None) -> None:
    directories: list[Path] = []

    async def body_that_raises() -> None:
        async with open_rsocket_unix_pair() as (_, server):
            directories.append(Path(server.get_addr()[0]).parent)
            raise KeyError("from the body")

    with pytest.raises(KeyError, match="from the body"):
        await body_that_raises()
    assert directories
    assert not directories[0].exists()


async def test_unix_pair_fixture_sockets_are_connected(
    rsocket_unix_pair: tuple[RSocket, RSocket], no_fd_leak: None
) -> None:
    client, server = rsocket_unix_pair
    await server.send_eof()
    assert await client.read() == b""
    assert client.get_peer_addr() == server.get_addr()


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
