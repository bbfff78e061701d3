"""RSocket pairs pass trio's own stream conformance checks."""

from __future__ import annotations

from trio.testing import check_half_closeable_stream

from .conftest import clogged_rsocket_pair, rsocket_pair


async def test_plain_pair_is_a_half_closeable_stream() -> None:
    await check_half_closeable_stream(rsocket_pair, clogged_rsocket_pair)
