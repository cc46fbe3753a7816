"""The policy protocol codec on exact bytes, including every kind of garbage."""

from __future__ import annotations

import pytest

from etrn_ext.wire.policy import (
    MAX_BLOCK_BYTES,
    MAX_LINE_BYTES,
    PolicyDecoder,
    PolicyRequest,
    ProtocolError,
    format_action,
)

# The ETRN block Postfix 3.7.11 sends (research notes, section 2a).
ETRN_BLOCK = (
    b"request=smtpd_access_policy\nprotocol_state=ETRN\nprotocol_name=ESMTP\nclient_address=127.0.0.12\n"
    b"client_name=unknown\nclient_port=37565\nreverse_client_name=unknown\nserver_address=127.0.0.11\n"
    b"server_port=25\nhelo_name=mx.site.test\nsender=\nrecipient=\nrecipient_count=0\nqueue_id=\ninstance=\n"
    b"size=0\netrn_domain=site.test\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\n"
    b"ccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\n"
    b"encryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n"
)


def decode(data: bytes) -> list[PolicyRequest]:
    decoder = PolicyDecoder()
    decoder.feed(data)
    return list(decoder.requests())


def test_postfix_etrn_block() -> None:
    [request] = decode(ETRN_BLOCK)
    assert (request.protocol_state, request.etrn_domain, request.client_address) == (
        "ETRN",
        "site.test",
        "127.0.0.12",
    )
    assert (request.queue_id, request.sasl_username, request.size) == ("", "", 0)


def test_blocks_split_anywhere_and_several_per_read() -> None:
    decoder = PolicyDecoder()
    data = ETRN_BLOCK * 3
    requests = []
    for start in range(0, len(data), 7):
        decoder.feed(data[start : start + 7])
        requests += decoder.requests()
    assert len(requests) == 3
    assert not decoder.mid_block


def test_crlf_and_leading_blank_lines_are_tolerated() -> None:
    data = b"\r\nrequest=smtpd_access_policy\r\nprotocol_state=RCPT\r\n\r\n"
    [request] = decode(data)
    assert request.protocol_state == "RCPT"
    decoder = PolicyDecoder()  # the same, one byte at a time: every CRLF split in two
    requests = []
    for byte in data:
        decoder.feed(bytes([byte]))
        requests += decoder.requests()
    assert [r.protocol_state for r in requests] == ["RCPT"]


def test_eight_bit_envelope_data_is_still_a_request() -> None:
    [request] = decode(b"request=smtpd_access_policy\nsender=\xff\xfe@example.org\n\n")
    assert request.sender == "\ufffd\ufffd@example.org"


def test_a_block_trickling_in_is_checked_as_it_comes() -> None:
    decoder = PolicyDecoder()
    decoder.feed(b"request=smtpd_access_policy\nx=")
    assert list(decoder.requests()) == []

    def one_more_byte() -> None:
        decoder.feed(b"a")
        list(decoder.requests())

    for _ in range(MAX_LINE_BYTES - 2):  # "x=" and these: as long as a line may be
        one_more_byte()
    with pytest.raises(ProtocolError, match="line longer"):
        one_more_byte()


def test_a_block_without_its_blank_line_is_still_pending() -> None:
    decoder = PolicyDecoder()
    decoder.feed(b"request=smtpd_access_policy\nprotocol_state=RCPT\n")
    assert list(decoder.requests()) == []
    assert decoder.mid_block


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"protocol_state=RCPT\n\n", "without request=", id="no-request"),
        pytest.param(b"request=something_else\n\n", "unknown request type", id="wrong-request"),
        pytest.param(
            b"request=smtpd_access_policy\ngarbage\n\n", "not a name=value line", id="no-equals"
        ),
        pytest.param(
            b"request=smtpd_access_policy\n=value\n\n", "not a name=value line", id="empty-name"
        ),
        pytest.param(b"request=smtpd_access_policy\nx=a\x00b\n\n", "control character", id="nul"),
        pytest.param(b"x=" + b"a" * MAX_LINE_BYTES + b"\n", "line longer", id="long-line"),
        pytest.param(
            b"x=" + b"a" * (MAX_LINE_BYTES + 10), "line longer", id="long-line-no-newline"
        ),
        pytest.param(
            b"".join(b"a%d=%s\n" % (n, b"v" * 1000) for n in range(MAX_BLOCK_BYTES // 1000 + 2)),
            "block larger",
            id="huge-block",
        ),
    ],
)
def test_garbage_is_a_protocol_error(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode(data)


def test_requests_before_garbage_come_out_first() -> None:
    decoder = PolicyDecoder()
    decoder.feed(ETRN_BLOCK + b"garbage\n\n")
    requests = decoder.requests()
    assert next(requests).etrn_domain == "site.test"
    with pytest.raises(ProtocolError):
        next(requests)


def test_actions() -> None:
    assert format_action("DUNNO") == b"action=DUNNO\n\n"
    assert format_action("452 4.2.2 quota") == b"action=452 4.2.2 quota\n\n"
    with pytest.raises(ValueError, match="one line"):
        format_action("OK\naction=REJECT")
