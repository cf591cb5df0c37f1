"""What a request is on the wire, and where its reply ends: one small interface, one class per protocol.

The users and the socket client are the same for every protocol (loadtest.client.socket_client).  A
protocol gives them the bytes of its one request and finds the end of a reply in the bytes received so
far; it never touches a socket, so a reply split across any number of reads, or several pipelined replies
in one read, are the same case::

    end, closing = protocol.reply_end(buf, start)   # None while incomplete; RequestFailure if malformed

``closing`` says the server will close the connection after this reply (HTTP/1.0, ``Connection:
close``): the client then closes too and the next request connects anew, with no failure.  A reply that
only the server's close ends (raw with no expected size, an HTTP body with no length) is taken whole by
``at_close``.  socklab's own frames keep their fast paths in the client; :class:`Socklab` here is the
same rule for the general path.  No locust import.
"""

from __future__ import annotations

import shlex
from typing import Any, ClassVar

from loadtest.client.failures import RequestFailure
from loadtest.declare.kinds import GET, MESSAGE, RAW, RESP
from loadtest.declare.protocols import HTTP, PROTOCOLS, SOCKLAB, decode_escapes
from loadtest.declare.protocols import RAW as RAW_PROTOCOL
from loadtest.declare.protocols import RESP as RESP_PROTOCOL
from servers.protocol import RESPONSE_HEADER, Status

MAX_HEADER = 64 * 1024  # an HTTP reply whose head is longer than this is not one we can read
MAX_LINE = 64 * 1024  # a RESP line or chunk-size line longer than this is malformed
Reply = tuple[int, bool] | None  # (end of the reply, the server closes after it), or None: not all here yet


def malformed(detail: str) -> RequestFailure:
    return RequestFailure("protocol error", detail)


class Protocol:
    """One request's bytes and its reply's end; a class per protocol."""

    name: ClassVar[str]
    kind: ClassVar[str]  # the request's kind (loadtest.declare.kinds): Locust's request type
    reply_is_close: ClassVar[bool] = False  # the reply is the server's close itself (the one-shot user)

    def request(self, keep_alive: bool = True) -> bytes:
        raise NotImplementedError

    def reply_end(self, buf: bytes | bytearray, start: int = 0) -> Reply:
        raise NotImplementedError

    def at_close(self, buf: bytes | bytearray, start: int = 0) -> int:
        """The server closed with ``buf[start:]`` received: where the reply ends, or why it is incomplete."""
        raise RequestFailure("closed", "the server closed the connection before the reply was complete")


class Socklab(Protocol):
    """socklab's frames (servers.protocol); the client's fast paths read them without this class."""

    name, kind = SOCKLAB, "ECHO"

    def __init__(self, frame: bytes = b"") -> None:
        self.frame = frame

    def request(self, keep_alive: bool = True) -> bytes:
        return self.frame

    def reply_end(self, buf: bytes | bytearray, start: int = 0) -> Reply:
        if len(buf) - start < RESPONSE_HEADER.size:
            return None
        length, status = RESPONSE_HEADER.unpack_from(buf, start)
        if length < 1 or length > (1 << 30) + 1:
            raise malformed("reply length out of range")
        if len(buf) - start < 4 + length:
            return None
        if status != 0:
            name = Status(status).name if status in Status._value2member_map_ else f"unknown status {status}"
            raise RequestFailure("bad status", name)
        return start + 4 + length, False


class Raw(Protocol):
    """Any bytes; a reply is N bytes, or up to a delimiter, or everything until the server closes."""

    name, kind = RAW_PROTOCOL, RAW

    def __init__(self, message: bytes, expect_bytes: int = 0, delimiter: bytes = b"") -> None:
        self.message, self.expect_bytes, self.delimiter = message, expect_bytes, delimiter

    def request(self, keep_alive: bool = True) -> bytes:
        return self.message

    def reply_end(self, buf: bytes | bytearray, start: int = 0) -> Reply:
        if self.expect_bytes:
            end = start + self.expect_bytes
            return (end, False) if len(buf) >= end else None
        if self.delimiter:
            at = buf.find(self.delimiter, start)
            return (at + len(self.delimiter), False) if at >= 0 else None
        return None  # until the server closes

    def at_close(self, buf: bytes | bytearray, start: int = 0) -> int:
        if self.expect_bytes or self.delimiter:
            return super().at_close(buf, start)
        return len(buf)


class OneShot(Raw):
    """The seed's client: one message, and the reply is the server's close (whatever it sent before)."""

    kind = MESSAGE
    reply_is_close = True

    def __init__(self, message: bytes) -> None:
        super().__init__(message)


class Http(Protocol):
    """HTTP/1.1 GET; the reply's end from Content-Length, chunked encoding, or the close."""

    name, kind = HTTP, GET

    def __init__(self, path: str = "/", host: str = "localhost") -> None:
        head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: socklab\r\nAccept: */*\r\n"
        self.keep, self.close = f"{head}\r\n".encode(), f"{head}Connection: close\r\n\r\n".encode()

    def request(self, keep_alive: bool = True) -> bytes:
        return self.keep if keep_alive else self.close

    def reply_end(self, buf: bytes | bytearray, start: int = 0) -> Reply:
        while True:
            head_end = buf.find(b"\r\n\r\n", start)
            if head_end < 0:
                if len(buf) - start > MAX_HEADER:
                    raise malformed(f"no end of the reply's head within {MAX_HEADER} bytes")
                if len(buf) - start >= 5 and bytes(buf[start : start + 5]) != b"HTTP/":
                    raise malformed("the reply does not start with an HTTP/1.x status line")
                return None
            version, status, headers = _parse_head(bytes(buf[start:head_end]))
            body = head_end + 4
            if 100 <= status < 200:  # an interim reply (100 Continue): the real one follows
                start = body
                continue
            if status >= 400:
                raise RequestFailure("bad status", f"HTTP {status}")
            connection = headers.get("connection", "").lower()
            closing = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
            if status in (204, 304):
                return body, closing
            if _chunked(headers):
                end = _chunked_end(buf, body)
                return None if end is None else (end, closing)
            if "content-length" in headers:
                try:
                    end = body + int(headers["content-length"])
                except ValueError:
                    raise malformed(f"Content-Length {headers['content-length']!r} is not a number") from None
                return (end, closing) if len(buf) >= end else None
            return None  # the body runs until the server closes

    def at_close(self, buf: bytes | bytearray, start: int = 0) -> int:
        head_end = buf.find(b"\r\n\r\n", start)
        if head_end < 0:
            return super().at_close(buf, start)
        headers = _parse_head(bytes(buf[start:head_end]))[2]
        if "content-length" in headers or _chunked(headers):
            return super().at_close(buf, start)  # it said how long the body is, and closed before its end
        return len(buf)


def _chunked(headers: dict[str, str]) -> bool:
    """The body comes in chunks (Transfer-Encoding is case-insensitive: 'Chunked' too)."""
    return "chunked" in headers.get("transfer-encoding", "").lower()


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise malformed(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise malformed(f"a header line with no colon: {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0], int(parts[1]), headers


def _chunked_end(buf: bytes | bytearray, pos: int) -> int | None:
    """The end of a chunked body that starts at ``pos``, or None while incomplete."""
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            if len(buf) - pos > MAX_LINE:
                raise malformed("a chunk-size line with no end")
            return None
        size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise malformed(f"chunk size {size_text[:20]!r} is not hexadecimal") from None
        if size == 0:  # the last chunk, then trailers up to an empty line
            trailer = line_end + 2
            if buf[trailer : trailer + 2] == b"\r\n":
                return trailer + 2
            end = buf.find(b"\r\n\r\n", trailer)
            return None if end < 0 else end + 4
        pos = line_end + 2 + size + 2
        if len(buf) < pos:
            return None


class Resp(Protocol):
    """Redis's protocol (RESP2 and RESP3 replies): one command; an error reply is a failure."""

    name, kind = RESP_PROTOCOL, RESP

    def __init__(self, command: str = "PING") -> None:
        args = [a.encode() for a in shlex.split(command)]
        self.frame = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)

    def request(self, keep_alive: bool = True) -> bytes:
        return self.frame

    def reply_end(self, buf: bytes | bytearray, start: int = 0) -> Reply:
        end = _resp_value_end(buf, start)
        return None if end is None else (end, False)


AGGREGATES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}  # elements per counted item
BLOBS = frozenset(b"$=!")  # a length line, then that many bytes and CRLF
LINES = frozenset(b"+:_#,(")  # the value is the line


def _resp_value_end(buf: bytes | bytearray, pos: int) -> int | None:
    """The end of the RESP value at ``pos`` (nested values iteratively), None while incomplete."""
    remaining = 1
    while remaining:
        if pos >= len(buf):
            return None
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            if len(buf) - pos > MAX_LINE:
                raise malformed("a RESP line with no end")
            return None
        kind, text = buf[pos], bytes(buf[pos + 1 : line_end])
        remaining -= 1
        if kind == ord("-"):
            raise RequestFailure("bad status", text.decode("latin-1", "replace")[:80])
        if kind in LINES:
            pos = line_end + 2
            continue
        try:
            count = int(text)
        except ValueError:
            raise malformed(f"RESP {chr(kind)!r} with length {text[:20]!r}") from None
        if kind in BLOBS:
            if kind == ord("!"):
                raise RequestFailure("bad status", "a blob error reply")
            pos = line_end + 2 + (count + 2 if count >= 0 else 0)
            if pos > len(buf):
                return None
            continue
        if kind in AGGREGATES:
            remaining += max(count, 0) * AGGREGATES[kind]
            pos = line_end + 2
            continue
        raise malformed(f"a reply of unknown RESP type {chr(kind)!r}")
    return pos


def from_options(opts: Any, host: str, payload: bytes, one_shot: bool = False) -> Protocol | None:
    """The protocol of a run's options; None for socklab's frames (the client's own fast paths)."""
    name = getattr(opts, "protocol", SOCKLAB) or SOCKLAB
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    message = decode_escapes(getattr(opts, "message", "") or "") or payload
    if one_shot:
        return OneShot(message)
    if name == RAW_PROTOCOL:
        delimiter = decode_escapes(getattr(opts, "expect_delimiter", "") or "")
        return Raw(message, int(getattr(opts, "expect_bytes", 0) or 0), delimiter)
    if name == HTTP:
        return Http(getattr(opts, "http_path", "/") or "/", host)
    if name == RESP_PROTOCOL:
        return Resp(getattr(opts, "resp_command", "PING") or "PING")
    return None
