"""The benchmark runs end to end (a smoke test: no figure is checked for speed)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_rsocket._bench import cli as bench_cli
from trio_rsocket._bench.backends import Backend
from trio_rsocket._bench.clients import _reconnects
from trio_rsocket._bench.report import Row, format_table
from trio_rsocket._bench.workloads import ANYIO, IMPLEMENTATIONS, BenchError, TLSFiles
from trio_rsocket._cli import main as cli_main
from trio_rsocket._command import EXIT_OK, EXIT_USAGE

# Far more than the smoke run takes; only a hang should ever reach it.
TIMEOUT = 180


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_rsocket._bench", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_quick_run_measures_every_implementation(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = run_bench("--quick", "--repeat", "1", "--only", "echo", "accept", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "64-byte echo, 1 connection" in result.stdout
    assert "sequential accepts" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [row["workload"] for row in rows] == ["echo", "accept"]
    for row in rows:
        assert sorted(row["samples"]) == sorted(IMPLEMENTATIONS)
        assert all(len(figures) == 1 and figures[0] > 0 for figures in row["samples"].values())


def test_quick_run_measures_file_transfer_and_tls_reconnects(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = run_bench("--quick", "--repeat", "1", "--only", "file", "tls-resume", "--json", str(out))
    assert result.returncode == 0, result.stderr
    rows = {row["workload"]: row for row in json.loads(out.read_text())["rows"]}
    assert list(rows) == [
        "file:send_file",
        "file:read+write",
        "tls-resume:tls1.3-full",
        "tls-resume:tls1.3-resumed",
        "tls-resume:tls1.2-full",
        "tls-resume:tls1.2-resumed",
    ]
    # trio has no sendfile: its read + send_all loop stands in both file rows.
    assert rows["file:send_file"]["variants"] == {"rsocket": "send_file", "trio": "read+write", "asyncio": "send_file"}
    for name, row in rows.items():
        expected = ["asyncio", "rsocket", "trio"] if name.startswith("file") else ["rsocket", "trio"]
        assert sorted(row["samples"]) == expected
        assert all(len(figures) == 1 and figures[0] > 0 for figures in row["samples"].values())
        # The sender's CPU time (this side) in the file transfer, the client's in the reconnects.
        assert sorted(row["client_cpu"]) == expected
    # The drain server is the same for every sender: its CPU time is not shown.
    assert not any(rows["file:send_file"]["server_cpu"].values())
    assert "file transfer: send_file / read + write" in result.stdout
    assert "TLS reconnects: TLS 1.2 resumed / TLS 1.2 full" in result.stdout


def test_quick_run_measures_tls_echo_and_idle_tls_pairs(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = run_bench("--quick", "--repeat", "1", "--only", "tls-echo", "tls-echo100", "tls-idle", "--json", str(out))
    assert result.returncode == 0, result.stderr
    rows = {row["workload"]: row for row in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["tls-echo", "tls-echo100", "tls-idle"]
    for row in rows.values():
        assert sorted(row["samples"]) == sorted(IMPLEMENTATIONS)
        assert all(len(figures) == 1 and figures[0] > 0 for figures in row["samples"].values())
    # Memory: less is better, so the ratio is trio's figure over RSocket's.
    assert not rows["tls-idle"]["higher_is_better"]
    assert "TLS 64-byte echo, 100 connections" in result.stdout
    assert "idle TLS pairs, memory" in result.stdout
    assert "100 idle TLS pairs" in result.stdout


def test_quick_run_measures_the_unix_socket_echo(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = run_bench("--quick", "--repeat", "1", "--only", "unix-echo", "--json", str(out))
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["workload"] == "unix-echo"
    has_anyio = importlib.util.find_spec("anyio") is not None
    assert sorted(row["samples"]) == sorted([*IMPLEMENTATIONS, *([ANYIO] if has_anyio else [])])
    assert row["missing"] == ({} if has_anyio else {ANYIO: "not installed"})
    assert all(len(figures) == 1 and figures[0] > 0 for figures in row["samples"].values())
    assert all(len(figures) == 1 and figures[0] > 0 for figures in row["server_cpu"].values())
    header = result.stdout.splitlines()[0].split()
    assert header[:3] == ["workload", "unit", "RSocket"]
    assert header[-3:] == [ANYIO, "vs", ANYIO]
    assert "Unix socket 64-byte echo, 1 connection" in result.stdout


def test_without_anyio_its_column_says_not_installed_and_the_run_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    # sys.modules["anyio"] = None: anyio cannot be found or imported, as if not installed.
    code = (
        "import sys; sys.modules['anyio'] = None; from trio_rsocket._bench import main; "
        f"sys.exit(main(['--quick', '--repeat', '1', '--only', 'unix-echo', '--json', {str(out)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["missing"] == {ANYIO: "not installed"}
    assert sorted(row["samples"]) == sorted(IMPLEMENTATIONS)
    line = next(line for line in result.stdout.splitlines() if line.startswith("Unix socket 64-byte echo"))
    assert line.split()[-3:] == ["not", "installed", "n/a"]


def test_the_anyio_column_is_shown_only_where_a_row_has_it() -> None:
    echo = Row("echo", "64-byte echo, 1 connection", "round trips/s", True, {"rsocket": [30.0], "trio": [20.0]})
    unix = Row(
        "unix-echo",
        "Unix socket 64-byte echo, 1 connection",
        "round trips/s",
        True,
        {"rsocket": [30.0], "trio": [20.0], "asyncio": [15.0]},
        missing={ANYIO: "not installed"},
    )
    assert ANYIO not in format_table([echo]).splitlines()[0].split()
    lines = format_table([echo, unix]).splitlines()
    assert lines[0].split()[-2:] == ["vs", ANYIO]
    # A row that did not measure anyio, and one that says why it could not.
    assert lines[2].split()[-2:] == ["n/a", "n/a"]
    assert lines[3].split()[-6:] == ["1.50x", "15", "2.00x", "not", "installed", "n/a"]


def test_reconnects_fail_loudly_when_a_session_is_not_resumed() -> None:
    class NeverResumes(Backend):
        name = "never"

        def reconnector(self, port: int, tls: TLSFiles, resume: bool) -> Callable[[], Awaitable[bool]]:
            async def reconnect() -> bool:
                await trio.lowlevel.checkpoint()
                return False

            return reconnect

    files = TLSFiles("ca.pem", "cert.pem", "key.pem")
    with pytest.raises(BenchError, match="did not resume"):
        trio.run(_reconnects, NeverResumes(), 0, 1.0, files, "tls1.2-resumed")


def test_variant_comparison_is_shown_for_implementations_measured_in_both() -> None:
    def row(variant: str, figures: dict[str, float], variants: dict[str, str]) -> Row:
        return Row(
            f"file:{variant}",
            f"file transfer ({variant})",
            "MB/s",
            True,
            {impl: [figure] for impl, figure in figures.items()},
            operation="MB",
            variants=variants,
        )

    rows = [
        row("send_file", {"rsocket": 300.0, "trio": 100.0}, {"rsocket": "send_file", "trio": "read+write"}),
        row("read+write", {"rsocket": 200.0, "trio": 100.0}, {"rsocket": "read+write", "trio": "read+write"}),
    ]
    line = next(line for line in format_table(rows).splitlines() if line.startswith("file transfer: send_file"))
    # RSocket: 300 / 200; trio ran one loop only, so it has no comparison.
    assert line.split()[-3:] == ["1.50x", "n/a", "n/a"]


def test_load_shows_saved_results_without_measuring(tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    row = Row("echo", "64-byte echo, 1 connection", "round trips/s", True, {"rsocket": [30.0], "trio": [20.0]})
    environment = {
        "python": "3",
        "trio": "0",
        "platform": "test",
        "cpus": 2,
        "settings": {
            "bulk_bytes": 2**20,
            "tls_bulk_bytes": 2**20,
            "seconds": 1,
            "repeat": 1,
            "concurrent": 100,
            "idle_connections": 10,
        },
        "fd_limit": {"before": 1024, "now": 1024, "hard": 1024},
    }
    saved.write_text(json.dumps({"environment": environment, "rows": [asdict(row)]}))
    result = run_bench("--load", str(saved))
    assert result.returncode == 0, result.stderr
    assert "1.50x" in result.stdout


def _saved_results(tmp_path: Path, document: object) -> str:
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(document))
    return str(path)


BAD_LOADS: list[Any] = [
    pytest.param(lambda tmp: str(tmp / "missing.json"), "No such file or directory", id="missing"),
    pytest.param(lambda tmp: str(tmp), "Is a directory", id="directory"),
    pytest.param(lambda tmp: _write(tmp, "{not json"), "not JSON (Expecting property name", id="not-json"),
    pytest.param(lambda tmp: _write(tmp, "\xff\xfe"), "not JSON", id="not-text"),
    pytest.param(lambda tmp: _saved_results(tmp, [1, 2]), "not the results saved by --json", id="a-list"),
    pytest.param(
        lambda tmp: _saved_results(tmp, {"rows": []}),
        "not the results saved by --json (no 'environment')",
        id="no-environment",
    ),
    pytest.param(
        lambda tmp: _saved_results(tmp, {"rows": [{"workload": "echo"}], "environment": {}}),
        "not the results saved by --json (Row.__init__() missing",
        id="a-short-row",
    ),
    pytest.param(
        lambda tmp: _saved_results(tmp, {"rows": [], "environment": {"settings": {}}}),
        "not the results saved by --json (no ",
        id="a-short-environment",
    ),
]


def _write(directory: Path, text: str) -> str:
    path = directory / "saved.json"
    path.write_bytes(text.encode("latin-1"))
    return str(path)


@pytest.mark.parametrize(("make", "words"), BAD_LOADS)
def test_a_load_file_that_is_not_saved_results_is_one_line_and_status_2(
    tmp_path: Path, make: Callable[[Path], str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make(tmp_path)
    assert cli_main(["bench", "--load", path]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"trio-rsocket bench: --load {path}: ")
    assert words in captured.err
    assert len(captured.err.splitlines()) == 1


@pytest.mark.parametrize("option", ["--json", "--chart"])
@pytest.mark.parametrize("where", ["no-such-directory/results", "."], ids=["missing-directory", "a-directory"])
def test_an_output_file_that_cannot_be_written_is_refused_before_measuring(
    tmp_path: Path, option: str, where: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if option == "--chart":
        pytest.importorskip("matplotlib")

    def measure(*_: object) -> None:
        raise AssertionError("the benchmark ran before the output file was checked")

    monkeypatch.setattr(bench_cli, "run", measure)
    path = str(tmp_path / where)
    assert cli_main(["bench", "--quick", "--only", "echo", option, path]) == 2
    errors = capsys.readouterr().err
    assert errors.startswith(f"trio-rsocket bench: {option} {path}: ")
    assert len(errors.splitlines()) == 1


def test_a_chart_without_matplotlib_is_refused_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def measure(*_: object) -> None:
        raise AssertionError("the benchmark ran before matplotlib was looked for")

    monkeypatch.setattr(bench_cli, "run", measure)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    assert cli_main(["bench", "--quick", "--chart", str(tmp_path / "chart.png")]) == 5
    assert "--chart needs matplotlib: pip install" in capsys.readouterr().err


def test_a_json_file_made_for_a_run_that_failed_is_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_: object) -> None:
        raise BenchError("a server died")

    monkeypatch.setattr(bench_cli, "run", fail)
    results = tmp_path / "results.json"
    assert cli_main(["bench", "--quick", "--json", str(results)]) == 1
    assert "a server died" in capsys.readouterr().err
    assert not results.exists()


def test_the_bench_names_itself_as_the_command_line_calls_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.json")
    assert cli_main(["bench", "--load", missing], prog="rs") == EXIT_USAGE
    assert capsys.readouterr().err.startswith(f"rs bench: --load {missing}: ")
    assert cli_main(["bench", "--help"], prog="rs") == EXIT_OK
    assert capsys.readouterr().out.startswith("usage: rs bench ")


def test_memory_ratio_counts_less_as_better() -> None:
    row = Row("idle", "idle connections, memory", "KiB/connection", False, {"rsocket": [4.0], "trio": [6.0]})
    assert row.ratio("trio") == 1.5
    assert "1.50x" in format_table([row])


def test_unknown_workload_is_a_usage_error() -> None:
    result = run_bench("--only", "nonsense")
    assert result.returncode == 2
    assert "nonsense" in result.stderr


def test_the_server_process_imports_the_same_trio_rsocket_as_the_bench(tmp_path: Path) -> None:
    # A folder holding another package of the same name (an older checkout,
    # say): the server must not import it from its working directory.
    decoy = tmp_path / "trio_rsocket"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('the decoy trio_rsocket was imported')\n")
    result = subprocess.run(
        [sys.executable, "-P", "-m", "trio_rsocket._bench", "--quick", "--only", "accept", "--repeat", "1", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "decoy" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert "sequential accepts" in result.stdout
