"""HTTP/1.1 connections with a bound on the request line and headers (uvicorn's httptools has none)."""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _HeadersTooLarge(Exception):
    pass


class HeaderLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol answering 431 and closing once a request's head passes `max_header_bytes`.

    httptools buffers a header until it is complete, so the bytes received while a head is incomplete
    are counted as they arrive, and the parts of each head as the parser hands them over.
    """

    max_header_bytes = 16384

    def connection_made(self, transport: object) -> None:
        self._head_too_large = False
        self._start_head()
        super().connection_made(transport)  # type: ignore[arg-type]

    def _start_head(self) -> None:
        self._reading_head = True
        self._head_bytes = 0  # received while the head is incomplete
        self._parsed_head_bytes = 0  # of the request line and headers handed over by the parser

    def data_received(self, data: bytes) -> None:
        if self._head_too_large:
            return
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_head and self._head_bytes > self.max_header_bytes and not self._head_too_large:
            self._refuse()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._start_head()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers any parser error with 400; a head that was too large gets its own status.
        if self._head_too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._parsed_head_bytes += size
        if self._parsed_head_bytes > self.max_header_bytes:
            self._head_too_large = True
            raise _HeadersTooLarge

    def _refuse(self) -> None:
        self._head_too_large = True
        if self.transport.is_closing():
            return
        message = (
            f"the request line and headers exceed {self.max_header_bytes} bytes (MAX_HEADER_BYTES); "
            "send shorter headers"
        )
        body = orjson.dumps({"error": message})
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self.transport.close()


def header_limited_protocol(max_header_bytes: int) -> type[HeaderLimitedProtocol]:
    """The protocol class for uvicorn's `http` setting, refusing heads over `max_header_bytes`."""
    return type("HeaderLimitedProtocol", (HeaderLimitedProtocol,), {"max_header_bytes": max_header_bytes})
