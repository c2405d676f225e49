"""Which headers of an answer the comparison sees (``ShadowFlag.header_view``)."""

from __future__ import annotations

from proxy.config.flags import Shadow
from proxy.shadow.service import ShadowFlag

HEADERS = [
    (b"Server", b"nginx"),
    (b"Content-Type", b"application/json"),
    (b"ETag", b'"v1"'),
    (b"content-type", b"text/plain"),  # a second one: the first counts
    (b"X-Request-Id", b"abc"),
]


def flag(*compared: str) -> ShadowFlag:
    return ShadowFlag("f", Shadow(percent=100, compare={"headers": list(compared)}))


def test_the_compared_headers_and_the_content_type_by_lower_case_name_first_value() -> None:
    assert flag("etag", "x-request-id").header_view(HEADERS) == {
        "etag": '"v1"',
        "x-request-id": "abc",
        "content-type": "application/json",
    }
    assert flag().header_view(HEADERS) == {"content-type": "application/json"}
    assert flag("x-missing").header_view(HEADERS) == {"content-type": "application/json"}
