"""The public API as mypy sees it: listen() checks handler(data, sock)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

PROGRAM = textwrap.dedent(
    """
    from trio_rsocket import RSocket

    async def greet(name: str, sock: RSocket) -> None:
        await sock.write(name.encode())

    async def anything(data: object, sock: RSocket) -> None:
        pass

    async def main(listener: RSocket) -> None:
        await listener.listen("127.0.0.1", 0, greet, "world")
        await listener.listen("127.0.0.1", 0, anything)
        await listener.listen("127.0.0.1", 0, lambda data, sock: anything(data, sock))
        await listener.listen("127.0.0.1", 0, greet, 42)  # line 14: data is not a str
    """
)


def test_listen_data_is_checked_against_the_handler(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    stdout, _, status = mypy_api.run(["--strict", "--no-incremental", "--cache-dir", str(tmp_path), str(program)])
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert status == 1, stdout
    assert len(errors) == 1, stdout
    assert "program.py:14:" in errors[0], stdout
