"""A programmatic corpus of malformed and hostile SIP messages, by family.

Each case carries a unique Via branch (when it has a Via) so that responses can be
matched to it, and the set of outcomes the RFC allows: a final status code, or
None for a silent drop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

DROP = None


@dataclass(frozen=True)
class Case:
    family: str
    name: str
    data: bytes
    branch: str | None
    expected: frozenset[int | None]


SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
       "a=rtpmap:101 telephone-event/8000\r\n")


class CorpusBuilder:
    def __init__(self, port: int, local_port: int) -> None:
        self.port = port
        self.local_port = local_port
        self.cases: list[Case] = []
        self.counter = 0

    def headers(self, method: str, branch: str, *, call_id: str | None = None,
                cseq_method: str | None = None, to_tag: str | None = None,
                drop: tuple[str, ...] = (), extra: str = "") -> list[str]:
        call_id = call_id or f"corpus-{branch}"
        lines = {
            "via": f"Via: SIP/2.0/UDP 127.0.0.1:{self.local_port};branch={branch};rport",
            "max-forwards": "Max-Forwards: 70",
            "from": f"From: <sip:attacker@127.0.0.1>;tag=f{branch[-6:]}",
            "to": "To: <sip:corpus@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
            "call-id": f"Call-ID: {call_id}",
            "cseq": f"CSeq: 1 {cseq_method or method}",
            "contact": f"Contact: <sip:attacker@127.0.0.1:{self.local_port}>",
        }
        out = [v for k, v in lines.items() if k not in drop]
        if extra:
            out.extend(extra.split("\n"))
        return out

    def build(self, method: str, branch: str, *, body: str = "", content_type: str | None = None,
              content_length: str | None = None, uri: str | None = None,
              start_line: str | None = None, **kw: object) -> bytes:
        head = [start_line or f"{method} {uri or f'sip:corpus@127.0.0.1:{self.port}'} SIP/2.0"]
        head += self.headers(method, branch, **kw)  # type: ignore[arg-type]
        if content_type or body:
            head.append(f"Content-Type: {content_type or 'application/sdp'}")
        length = content_length if content_length is not None else len(body.encode())
        head.append(f"Content-Length: {length}")
        return ("\r\n".join(head) + "\r\n\r\n" + body).encode()

    def branch(self) -> str:
        self.counter += 1
        return f"z9hG4bKcorpus{self.counter:05d}"

    def add(self, family: str, name: str, data: bytes, branch: str | None,
            *expected: int | None) -> None:
        self.cases.append(Case(family, name, data, branch, frozenset(expected)))

    # ------------------------------------------------------------------
    def truncated(self) -> None:
        b0 = self.branch()
        full = self.build("INVITE", b0, body=SDP)
        head_end = full.index(b"\r\n\r\n")
        for cut in range(10, len(full) - 1, max(1, len(full) // 40)):
            b = self.branch()
            data = self.build("INVITE", b, body=SDP)[:cut]
            if cut > head_end + 4:
                expected: tuple[int | None, ...] = (400,)  # body shorter than Content-Length
            else:
                # depends on which headers survived the cut: a cut that removed only
                # Content-Type/Length leaves a valid INVITE without SDP (refused: 480)
                expected = (400, DROP, 480)
            self.add("truncated", f"cut at {cut}", data, b, *expected)

    def oversized(self) -> None:
        b = self.branch()
        self.add("oversized", "9 kB header line",
                 self.build("OPTIONS", b, extra="X-Big: " + "a" * 9000), b, 400)
        b = self.branch()
        self.add("oversized", "200 headers",
                 self.build("OPTIONS", b, extra="\n".join(f"X-N{i}: v" for i in range(200))),
                 b, 400)
        b = self.branch()
        self.add("oversized", "40 kB body",
                 self.build("MESSAGE", b, body="x" * 40000, content_type="text/plain"), b, 400)
        for size in (1000, 5000, 20000):
            b = self.branch()
            self.add("oversized", f"{size} Via values",
                     self.build("OPTIONS", b, extra="Via: " + ", ".join(
                         f"SIP/2.0/UDP h{i}" for i in range(size // 20))), b, 400, 200)

    def content_length(self) -> None:
        for name, cl, expected in [
            ("longer than body", "500", (400,)),
            ("not a number", "abc", (400,)),
            ("negative", "-5", (400,)),
            ("huge", "99999999999", (400,)),
            ("with spaces inside", "1 2", (400,)),
        ]:
            b = self.branch()
            self.add("content-length", name,
                     self.build("INVITE", b, body=SDP, content_length=cl), b, *expected)
        b = self.branch()
        self.add("content-length", "shorter than body (SDP cut)",
                 self.build("INVITE", b, body=SDP, content_length="40"), b, 400, 488)
        b = self.branch()
        self.add("content-length", "OPTIONS body shorter",
                 self.build("OPTIONS", b, body="hello", content_type="text/plain",
                            content_length="2"), b, 200)
        b = self.branch()
        self.add("content-length", "two different",
                 self.build("OPTIONS", b, extra="Content-Length: 7"), b, 400)

    def missing_headers(self) -> None:
        for method in ("INVITE", "OPTIONS", "BYE", "REGISTER", "INFO"):
            for header in ("via", "call-id", "cseq", "from", "to"):
                b = self.branch()
                body = SDP if method == "INVITE" else ""
                data = self.build(method, b, body=body, drop=(header,))
                expected = (DROP,) if header == "via" else (400,)
                self.add("missing", f"{method} without {header}", data,
                         None if header == "via" else b, *expected)

    def broken_sdp(self) -> None:
        variants = {
            "no m line": SDP.replace("m=audio 4000 RTP/AVP 0 101\r\n", ""),
            "video only": SDP.replace("m=audio", "m=video"),
            "only G.729": SDP.replace("RTP/AVP 0 101", "RTP/AVP 18").replace(
                "a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000"),
            "port out of range": SDP.replace("4000", "70000"),
            "non-numeric port": SDP.replace("4000", "four"),
            "no c line": SDP.replace("c=IN IP4 127.0.0.1\r\n", ""),
            "garbage": "this is not sdp\r\n",
            "binary": "\x01\x02\x03=\xff\r\n",
            "bad payload type": SDP.replace("RTP/AVP 0 101", "RTP/AVP 0 999"),
            "bad c line": SDP.replace("c=IN IP4 127.0.0.1", "c=IN"),
            "m without formats": SDP.replace("m=audio 4000 RTP/AVP 0 101", "m=audio 4000"),
            "empty lines only": "\r\n\r\n",
        }
        for name, body in variants.items():
            b = self.branch()
            self.add("sdp", name, self.build("INVITE", b, body=body), b, 488, 400)
        b = self.branch()
        self.add("sdp", "text/plain body", self.build("INVITE", b, body="hi",
                                                      content_type="text/plain"), b, 415)

    def unknown_methods(self) -> None:
        rng = random.Random(5)
        for i in range(20):
            method = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(3 + i % 8))
            b = self.branch()
            self.add("methods", f"unknown {method}", self.build(method, b), b, 501)
        for method in ("invite", "Bye", "options"):  # methods are case-sensitive
            b = self.branch()
            self.add("methods", f"lower-case {method}", self.build(method, b), b, 501)
        for method in ("SUBSCRIBE", "NOTIFY", "MESSAGE", "PUBLISH"):
            b = self.branch()
            self.add("methods", f"unsupported {method}", self.build(method, b), b, 405)
        b = self.branch()  # REFER is honoured inside a call only (RFC 3515 transfers)
        self.add("methods", "REFER outside a dialog", self.build("REFER", b), b, 403)

    def start_lines(self) -> None:
        for name, line in [
            ("SIP/3.0", "OPTIONS sip:x@127.0.0.1 SIP/3.0"),
            ("no version", "OPTIONS sip:x@127.0.0.1"),
            ("four tokens", "OPTIONS sip:x@127.0.0.1 SIP/2.0 extra"),
            ("URI without scheme", "OPTIONS nothing SIP/2.0"),
            ("method with slash", "OP/TIONS sip:x@127.0.0.1 SIP/2.0"),
        ]:
            b = self.branch()
            self.add("start-line", name, self.build("OPTIONS", b, start_line=line), b, 400)
        for name, data in [
            ("empty datagram", b""),
            ("CRLF keep-alive", b"\r\n\r\n"),
            ("binary noise", bytes(random.Random(1).randrange(256) for _ in range(300))),
            ("HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("NUL bytes", b"\x00" * 64),
            ("status line garbage", b"SIP/2.0 99999 Nope\r\n\r\n"),
            ("stray response", b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKn\r\n"
                               b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: s\r\n"
                               b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"),
        ]:
            self.add("start-line", name, data, None, DROP)

    def bad_values(self) -> None:
        for name, kw, expected in [
            ("CSeq not a number", {"drop": ("cseq",), "extra": "CSeq: abc OPTIONS"}, (400,)),
            ("CSeq method mismatch", {"cseq_method": "INVITE"}, (400,)),
            ("CSeq too big", {"drop": ("cseq",), "extra": "CSeq: 99999999999 OPTIONS"}, (400,)),
            ("From unterminated", {"drop": ("from",), "extra": "From: <sip:a@b;tag=1"}, (400,)),
            ("To without URI", {"drop": ("to",), "extra": "To: ;tag=1"}, (400,)),
            ("header without colon", {"extra": "Broken header line"}, (400,)),
            ("bad header name", {"extra": "Bad Name: v"}, (400,)),
            ("empty Call-ID", {"drop": ("call-id",), "extra": "Call-ID: "}, (400,)),
            ("Call-ID 300 chars", {"drop": ("call-id",), "extra": "Call-ID: " + "c" * 300},
             (400,)),
            ("compact form headers", {"drop": ("call-id",), "extra": "i: compact-ok"}, (200,)),
            ("folded header", {"extra": "Subject: a\r\n  folded"}, (200,)),
            ("empty header", {"extra": "Supported:"}, (200,)),
            ("lower-case names", {"drop": ("max-forwards",), "extra": "max-forwards: 70"},
             (200,)),
        ]:
            b = self.branch()
            self.add("values", name, self.build("OPTIONS", b, **kw), b, *expected)
        bad_via = self.build("OPTIONS", self.branch(), drop=("via",),
                             extra="Via: total garbage")
        self.add("values", "unparseable Via", bad_via, None, DROP)
        b = self.branch()
        self.add("values", "Max-Forwards 0",
                 self.build("INVITE", b, body=SDP, drop=("max-forwards",),
                            extra="Max-Forwards: 0"), b, 483)
        b = self.branch()
        self.add("values", "Require unknown extension",
                 self.build("INVITE", b, body=SDP, extra="Require: 100rel, foo"), b, 420)

    def no_dialog(self) -> None:
        for method in ("BYE", "INFO", "UPDATE"):
            for i in range(3):
                b = self.branch()
                self.add("dialog", f"{method} outside any dialog #{i}",
                         self.build(method, b, to_tag=f"nope{i}"), b, 481)
        b = self.branch()
        self.add("dialog", "re-INVITE of unknown dialog",
                 self.build("INVITE", b, body=SDP, to_tag="nope"), b, 481)
        for i in range(3):
            b = self.branch()
            self.add("dialog", f"CANCEL without INVITE #{i}", self.build("CANCEL", b), b, 481)
        self.add("dialog", "stray ACK", self.build("ACK", self.branch(), to_tag="x"), None, DROP)

    def valid_calls(self) -> None:
        """INVITEs that are acceptable: the test handler refuses them with 480."""
        for i in range(5):
            b = self.branch()
            self.add("valid", f"acceptable INVITE #{i}", self.build("INVITE", b, body=SDP),
                     b, 480)
        b = self.branch()
        self.add("valid", "INVITE without SDP (late offer)", self.build("INVITE", b), b, 480)

    def retransmission_flood(self) -> list[Case]:
        b = self.branch()
        data = self.build("OPTIONS", b)
        for i in range(40):
            self.add("flood", f"OPTIONS retransmission {i}", data, b, 200)
        b = self.branch()
        data = self.build("INVITE", b, body=SDP)
        for i in range(20):
            self.add("flood", f"INVITE retransmission {i}", data, b, 480)
        return self.cases

    def options_flood(self) -> None:
        """Many distinct transactions at once: each gets its own 200."""
        for i in range(50):
            b = self.branch()
            self.add("flood", f"distinct OPTIONS {i}", self.build("OPTIONS", b), b, 200)

    def call_id_reuse(self, live_call_id: str, live_from: str, live_to_tag: str) -> None:
        """Requests reusing the Call-ID of the call in progress."""
        b = self.branch()
        self.add("call-id", "INVITE merging into the live call (same Call-ID, From tag)",
                 self.build("INVITE", b, body=SDP, call_id=live_call_id, drop=("from",),
                            extra=f"From: {live_from}"), b, 482)
        for i, method in enumerate(("BYE", "INFO", "UPDATE", "INVITE")):
            b = self.branch()
            body = SDP if method == "INVITE" else ""
            self.add("call-id", f"{method} on the live Call-ID with a wrong To tag",
                     self.build(method, b, body=body, call_id=live_call_id,
                                to_tag=f"{live_to_tag}x{i}"), b, 481)
        b = self.branch()
        self.add("call-id", "BYE on the live Call-ID with the right To tag, wrong From tag",
                 self.build("BYE", b, call_id=live_call_id, to_tag=live_to_tag), b, 481)
        for i in range(3):  # a finished corpus call's Call-ID used again: a new call
            b = self.branch()
            self.add("call-id", f"new INVITE reusing a finished Call-ID #{i}",
                     self.build("INVITE", b, body=SDP, call_id="corpus-reused"), b, 480)

    def register(self) -> None:
        for name, extra, expected in [
            ("no credentials", "", (401,)),
            ("wrong password", 'Authorization: Digest username="alice", realm="centrale", '
             'nonce="1.bad", uri="sip:127.0.0.1", response="00"', (403,)),
            ("not digest", "Authorization: Basic YWxpY2U6eA==", (401,)),
        ]:
            b = self.branch()
            self.add("register", name,
                     self.build("REGISTER", b, uri="sip:127.0.0.1", extra=extra), b, *expected)

    def all(self, live_call_id: str, live_from: str, live_to_tag: str) -> list[Case]:
        for family in (self.truncated, self.oversized, self.content_length,
                       self.missing_headers, self.broken_sdp, self.unknown_methods,
                       self.start_lines, self.bad_values, self.no_dialog, self.valid_calls,
                       self.register, self.options_flood):
            family()
        self.call_id_reuse(live_call_id, live_from, live_to_tag)
        self.retransmission_flood()
        return self.cases
