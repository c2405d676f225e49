"""A corpus of malformed and hostile requests for tests/http/test_hostile_requests.py.

Every case is complete bytes for one connection. ``REFUSED`` cases must get a 4xx
answer; ``CUT`` cases (a head that never ends) may get a 4xx or just a close (the
client idle timeout). None may reach a backend.
"""

from __future__ import annotations

from typing import NamedTuple

REFUSED = "refused"
CUT = "cut"


class Case(NamedTuple):
    id: str
    data: bytes
    outcome: str = REFUSED


def _post(headers: bytes, body: bytes = b"", target: bytes = b"/x") -> bytes:
    return b"POST " + target + b" HTTP/1.1\r\nHost: test\r\n" + headers + b"\r\n" + body


def _get(target: bytes, headers: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET " + target + b" " + version + b"\r\nHost: test\r\n" + headers + b"\r\n"


CHUNKED = b"Transfer-Encoding: chunked\r\n"
BODY = b"5\r\nhello\r\n0\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n"

_TRANSFER_ENCODINGS = [
    b"xchunked",
    b"chunked, identity",
    b"identity",
    b"identity, chunked",
    b"gzip, chunked",
    b"deflate",
    b"chunked, chunked",
    b"chunked;foo=bar",
    b"chunk",
    b"chunkedx",
    b'"chunked"',
    b",chunked",
    b"chunked,",
    b"",
    b"chunked\x0b",
    b"\x0cchunked",
    b"ch\x00unked",
]
_TE_CASES = [
    Case(f"te:{value.decode('latin-1')!r}", _post(b"Transfer-Encoding: " + value + b"\r\n", BODY))
    for value in _TRANSFER_ENCODINGS
] + [
    Case("te-twice", _post(CHUNKED + CHUNKED, BODY)),
    Case("te-then-bogus", _post(CHUNKED + b"Transfer-Encoding: x\r\n", BODY)),
    Case("te-bogus-then-chunked", _post(b"Transfer-Encoding: x\r\n" + CHUNKED, BODY)),
    Case("te-space-before-colon", _post(b"Transfer-Encoding : chunked\r\n", BODY)),
    Case("te-obs-fold", _post(b"Transfer-Encoding:\r\n chunked\r\n", BODY)),
    Case("te-http10", b"POST /x HTTP/1.0\r\nHost: test\r\n" + CHUNKED + b"\r\n" + BODY),
    Case("cl-then-te", _post(b"Content-Length: 6\r\n" + CHUNKED, b"0\r\n\r\n" + SMUGGLED)),
    Case("te-then-cl", _post(CHUNKED + b"Content-Length: 6\r\n", b"0\r\n\r\n" + SMUGGLED)),
    Case("te-identity-then-cl", _post(b"Transfer-Encoding: identity\r\nContent-Length: 3\r\n")),
    Case("te-chunked-cl-zero", _post(b"Content-Length: 0\r\n" + CHUNKED, BODY)),
]

_CONTENT_LENGTHS = [
    b"-1",
    b"+5",
    b"5 5",
    b"0x5",
    b"5.0",
    b"1e3",
    b"",
    b"five",
    b"99999999999999999999999999",
    b"5, 5",
    b"5,6",
]
_CL_CASES = [
    Case(f"cl:{value.decode()!r}", _post(b"Content-Length: " + value + b"\r\n", b"hello"))
    for value in _CONTENT_LENGTHS
] + [
    Case("cl-twice-same", _post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello")),
    Case("cl-twice-different", _post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!")),
    Case("cl-absurd", _post(b"Content-Length: 1000000000000\r\n", b"x")),
]

_CHUNK_BODIES = [
    b"zz\r\nhello\r\n0\r\n\r\n",
    b"-5\r\nhello\r\n0\r\n\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"5 \r\nhello\r\n0\r\n\r\n",
    b" 5\r\nhello\r\n0\r\n\r\n",
    b"5\nhello\n0\n\n",
    b"5\rhello\r\n0\r\n\r\n",
    b"5\r\nhelloXX\r\n0\r\n\r\n",
    b"\r\nhello\r\n0\r\n\r\n",
    b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    b"5;\x00=1\r\nhello\r\n0\r\n\r\n",
    b'5;a="\x01"\r\nhello\r\n0\r\n\r\n',
    b"5;a\rb\r\nhello\r\n0\r\n\r\n",
    b"5;a=b\nhello\r\n0\r\n\r\n",
    b"5\r\nhello0\r\n\r\n",
    b"5\r\nhello\r\n0\r\nX-Trailer\r\n\r\n",
]
_CHUNK_CASES = [Case(f"chunk:{body[:12]!r}", _post(CHUNKED, body)) for body in _CHUNK_BODIES]

_HEADER_LINES = [
    b"X-A: a\rX-Injected: 1\r\n",
    b"X-A: a\x00b\r\n",
    b"X-A\x00: a\r\n",
    b"X-A\r: a\r\n",
    b"X A: a\r\n",
    b"X-A : a\r\n",
    b": no-name\r\n",
    b"no-colon\r\n",
    b" X-Folded: a\r\n",
    b"X-A: a\r\n\tfolded\r\n",
    b"X-(A): a\r\n",
    b"X-A@: a\r\n",
    b"X-A: a\x7fb\r\n",
    b"X-A: a\x01b\r\n",
    b"X-\xffA: a\r\n",
    b"Host: a\x00b\r\n",
]
_HEADER_CASES = [Case(f"header:{line[:14]!r}", _get(b"/h", line)) for line in _HEADER_LINES] + [
    Case("header-lf-only-line-end", b"GET /h HTTP/1.1\r\nHost: test\nX-A: 1\r\n\r\n"),
    Case("head-lf-only", b"GET /h HTTP/1.1\nHost: test\n\n"),
    Case("head-cr-only", b"GET /h HTTP/1.1\rHost: test\r\r"),
]

_REQUEST_LINES = [
    b"G@T / HTTP/1.1",
    b"get / HTTP/1.1",
    b"GET\x00 / HTTP/1.1",
    b"HELLO / HTTP/1.1",
    b"GETT / HTTP/1.1",
    b"/ HTTP/1.1",
    b"GET / HTTP/1.1 extra",
    b"GET / HTTP/2.0",
    b"GET / HTTP/1.10",
    b"GET / http/1.1",
    b"GET / HTTP/1",
    b"GET / HTTP/",
    b"GET / FTP/1.1",
    b"GET\t/\tHTTP/1.1",
    b"GET /a b HTTP/1.1",
    b"GET /\x00 HTTP/1.1",
    b"GET /\x7f HTTP/1.1",
    b"GET /\xff HTTP/1.1",
    b"GET /\x1b[31m HTTP/1.1",
    b"PRI * HTTP/2.0",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
]
_LINE_CASES = [
    Case(f"line:{line[:16]!r}", line + b"\r\nHost: test\r\n\r\n") for line in _REQUEST_LINES
] + [
    Case("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    Case("connect-authority", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
    Case("connect-path", b"CONNECT /tunnel HTTP/1.1\r\nHost: test\r\n\r\n"),
]

_TARGETS = [
    b"http://evil.example/admin",
    b"https://evil.example/",
    b"HTTP://test/x",
    b"evil.example:80",
    b"*",
    b"x",
    b"?q=1",
    b"/a#fragment",
    b"/../etc/passwd",
    b"/a/../../b",
    b"/%2e%2e/x",
    b"/%2E%2E/%2e%2e/x",
    b"/a/%2e%2e/%2e%2e/x",
    b"/a%zz",
    b"/a%",
    b"/a%0",
    b"/a%00",
    b"/..",
]
_TARGET_CASES = [Case(f"target:{target!r}", _get(target)) for target in _TARGETS] + [
    Case("options-asterisk", b"OPTIONS * HTTP/1.1\r\nHost: test\r\n\r\n"),
]

_UPGRADE_CASES = [
    Case(
        "h2c-upgrade-with-body",
        _post(
            b"Content-Length: 5\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
            b"hello",
        ),
    ),
    Case(
        "h2c-upgrade-chunked",
        _post(CHUNKED + b"Upgrade: h2c\r\nConnection: Upgrade\r\n", BODY),
    ),
    Case(
        "websocket-upgrade-bad-te",
        _post(b"Transfer-Encoding: xchunked\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"),
    ),
]

_LIMIT_CASES = [
    Case("huge-request-line", b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: test\r\n\r\n"),
    Case("huge-header", _get(b"/h", b"X-Big: " + b"b" * 20_000 + b"\r\n")),
    Case("many-small-headers", _get(b"/h", b"".join(b"X-%d: v\r\n" % i for i in range(200)))),
    Case(
        "head-over-limit",
        _get(b"/h", b"".join(b"X-%d: %s\r\n" % (i, b"c" * 900) for i in range(20))),
    ),
    Case("endless-header-line", b"GET /h HTTP/1.1\r\nX-Endless: " + b"e" * 40_000),
    Case("endless-request-line", b"GET /" + b"e" * 40_000),
    Case("endless-method", b"G" * 40_000),
]

_CUT_CASES = [
    Case("head-never-ends", b"GET /cut HTTP/1.1\r\nHost: test\r\n", CUT),
    Case("only-empty-lines", b"\r\n\r\n\r\n", CUT),
    Case("request-line-cut", b"GET /cut HT", CUT),
]

_BAD_THEN_GOOD = [
    Case("garbage-then-valid", b"NOT HTTP\r\n\r\n" + SMUGGLED),
    Case("bad-te-then-valid", _post(b"Transfer-Encoding: xchunked\r\n", BODY) + SMUGGLED),
    Case("nul-then-valid", b"\x00\x00\x00\x00" + SMUGGLED),
]

CORPUS: list[Case] = [
    *_TE_CASES,
    *_CL_CASES,
    *_CHUNK_CASES,
    *_HEADER_CASES,
    *_LINE_CASES,
    *_TARGET_CASES,
    *_UPGRADE_CASES,
    *_LIMIT_CASES,
    *_CUT_CASES,
    *_BAD_THEN_GOOD,
]
