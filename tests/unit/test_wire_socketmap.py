"""The socketmap codec on exact bytes."""

from __future__ import annotations

import pytest

from etrn_ext.wire.errors import ProtocolError
from etrn_ext.wire.socketmap import Lookup, NetstringDecoder, found, netstring, not_found


def decode(data: bytes) -> list[Lookup]:
    decoder = NetstringDecoder()
    decoder.feed(data)
    return list(decoder.requests())


def test_lookups_split_anywhere() -> None:
    data = netstring("etrnpolicy 127.0.0.23 site.test") + netstring(
        "etrnpolicy 127.0.0.9 @site.test"
    )
    decoder = NetstringDecoder()
    lookups: list[Lookup] = []
    for byte in data:
        decoder.feed(bytes([byte]))
        lookups += decoder.requests()
    assert lookups == [
        Lookup("etrnpolicy", "127.0.0.23 site.test"),
        Lookup("etrnpolicy", "127.0.0.9 @site.test"),
    ]
    assert not decoder.mid_block


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"abc:hello,", "length", id="letters"),
        pytest.param(b"99999999:", "length", id="too-many-digits"),
        pytest.param(b"5000:" + b"x" * 5000 + b",", "longer than", id="too-long"),
        pytest.param(b"5:hello;", "not ended", id="no-comma"),
        pytest.param(b"5:hello,", "mapname", id="no-key"),
        pytest.param(b"3:a \xff,", "UTF-8", id="binary"),
    ],
)
def test_garbage(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode(data)


def test_replies() -> None:
    assert netstring("etrnpolicy 127.0.0.23 site.test") == b"31:etrnpolicy 127.0.0.23 site.test,"
    assert found("HOOK") == b"7:OK HOOK,"
    assert not_found() == b"9:NOTFOUND ,"
