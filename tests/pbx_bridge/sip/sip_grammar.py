"""Hypothesis strategies that write SIP requests the way an attacker would: every part
from the RFC 3261 grammar, any value possibly replaced by something hostile (Unicode
digits, huge numbers, separators, quotes, very long or non-ASCII text), and optionally
the bytes mutated afterwards.

The top Via is always well-formed and first, naming the sender with `rport`: the
server must then answer every request but ACK (the fuzz harness's invariant). Values
never hold CR, LF or NUL, which would change where the header block ends.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import strategies as st

HOSTILE_VALUES = [
    "\u00b2", "1\u00b2", "\u0661\u0662", "\uff11\uff12", "\u2460", "9" * 40, "-1", "", " ",
    '"', '"unterminated', "<", ">", "<sip:", ";", ";;;", ",", "=", "\\", "%00", "\u00e9",
    "\u202e", "a" * 2000, "sip:", "@", ":", ":0", ":65536", "0x10", "1e9", "\t", "\u00a0",
    "\udcff", "5\udcb2", "z9hG4bK", "*",  # lone surrogates: raw 0xFF / 0xB2 bytes
]
_SAFE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"),
                           blacklist_characters="\u2028\u2029\u0085"),
    max_size=40)
_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
METHODS = ["INVITE", "REGISTER", "OPTIONS", "BYE", "CANCEL", "INFO", "UPDATE", "ACK",
           "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PRACK", "PUBLISH"]
_branches = itertools.count(1)


def hostile(normal: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Mostly the normal value; sometimes a hostile one, alone or appended."""
    bad = st.sampled_from(HOSTILE_VALUES)
    return st.one_of(normal, normal, normal, bad, st.builds(str.__add__, normal, bad), _SAFE_TEXT)


def _number(max_value: int = 2**31 - 1) -> st.SearchStrategy[str]:
    return hostile(st.integers(0, max_value).map(str))


@st.composite
def sdp_body(draw: st.DrawFn) -> str:
    port = draw(_number(65535))
    pts = draw(hostile(st.sampled_from(["0", "8", "0 8 101", "8 101", "18", "0 96"])))
    lines = ["v=0", f"o=- {draw(_number())} 1 IN IP4 127.0.0.1", "s=-",
             f"c=IN IP4 {draw(hostile(st.sampled_from(['127.0.0.1', '0.0.0.0', '::1'])))}",
             "t=0 0", f"m=audio {port} RTP/AVP {pts}",
             f"a=rtpmap:{draw(_number(127))} {draw(hostile(st.just('telephone-event/8000')))}",
             f"a=ptime:{draw(_number(1000))}",
             f"a={draw(hostile(st.sampled_from(['sendrecv', 'sendonly', 'inactive'])))}"]
    drop = draw(st.sets(st.integers(0, len(lines) - 1), max_size=2))
    return "\r\n".join(line for i, line in enumerate(lines) if i not in drop) + "\r\n"


@dataclass
class FuzzRequest:
    data: bytes
    method: str
    branch: str

    @property
    def needs_response(self) -> bool:
        return self.method != "ACK"


@st.composite
def sip_request(draw: st.DrawFn, *, transport: str, port: int,
                mutate_bytes: bool = False) -> FuzzRequest:
    method = draw(st.one_of(st.sampled_from(METHODS), _TOKEN.map(str.upper),
                            st.sampled_from(["INV\u00b2TE", "invite", "I-N"])))
    branch = f"z9hG4bKfz{next(_branches)}x{draw(_TOKEN)}"
    user = draw(hostile(st.sampled_from(["1000", "alice", "+31201234567", "bob"])))
    uri_port = draw(st.one_of(st.just(""), _number(70000).map(lambda p: ":" + p)))
    uri = f"sip:{user}@127.0.0.1{uri_port}".replace(" ", "")
    headers: list[tuple[str, str]] = [
        ("Via", f"SIP/2.0/{transport} 127.0.0.1:{port};branch={branch};rport")]
    tag = draw(_TOKEN)
    optional = [
        ("From", f"{draw(hostile(st.just(chr(34) + 'Fuzz' + chr(34))))} "
                 f"<sip:{draw(hostile(st.just('alice')))}@127.0.0.1>;tag={tag}"),
        ("To", f"<sip:{user}@127.0.0.1>" + draw(st.sampled_from(["", ";tag=x1", ";tag="]))),
        ("Call-ID", draw(hostile(st.just(f"fuzz-{branch}")))),
        ("CSeq", f"{draw(_number())} {draw(hostile(st.just(method)))}"),
        ("Max-Forwards", draw(_number(255))),
        ("Contact", draw(hostile(st.just(f"<sip:alice@127.0.0.1:{port}>")))),
        ("Expires", draw(_number())),
        ("Session-Expires", draw(hostile(st.just("1800;refresher=uac")))),
        ("Require", draw(hostile(st.sampled_from(["timer", "100rel"])))),
        ("Privacy", draw(hostile(st.sampled_from(["none", "id"])))),
        ("P-Asserted-Identity", draw(hostile(st.just("<sip:+31201234567@127.0.0.1>")))),
        ("Authorization", 'Digest username="alice", realm="centrale", '
                          f'nonce="{draw(hostile(st.just("1700000000.abc")))}", '
                          f'uri="{uri}", response="{draw(hostile(st.just("0" * 32)))}"'),
        ("Content-Type", draw(hostile(st.sampled_from(
            ["application/sdp", "application/dtmf-relay", "text/plain"])))),
    ]
    keep = draw(st.lists(st.booleans(), min_size=len(optional), max_size=len(optional)))
    # the routing headers are present more often than not
    for i, (name, value) in enumerate(optional):
        if keep[i] or (i < 4 and draw(st.integers(0, 4)) > 0):
            headers.append((name, value))
    body = draw(st.one_of(st.just(""), sdp_body(), st.just("Signal=5\r\nDuration=160\r\n")))
    encoded = body.encode("utf-8", "surrogateescape")
    length = draw(st.one_of(st.just(str(len(encoded))), st.just(str(len(encoded))),
                            _number(100_000)))
    head = f"{method} {uri} SIP/2.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    head += f"Content-Length: {length}\r\n\r\n"
    data = head.encode("utf-8", "surrogateescape") + encoded
    if mutate_bytes:
        data = draw(_mutated(data))
    return FuzzRequest(data, method, branch)


@st.composite
def _mutated(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, max(0, len(out) - 1)))
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        if op == "flip" and out:
            out[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del out[pos:pos + draw(st.integers(1, 40))]
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=20))
        else:
            out[pos:pos] = out[pos:pos + draw(st.integers(1, 80))]
    return bytes(out)
