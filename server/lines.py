"""The RFC 9112 line grammar as byte patterns, and the checks the parser makes with them.

Pure functions over bytes (sans-IO), called by :class:`server.parser.RequestParser` in the
thread that holds the connection: the request line (RFC 9112 §3), the chunk-size line with its
extensions (§7.1, §7.1.1), a field line (RFC 9110 §5), line endings (RFC 9112 §2.2). Each
check raises the :class:`~server.errors.HTTPError` to answer; an unfinished line is refused as
soon as it can no longer become valid, so nothing waits for a line that never ends.
"""

from __future__ import annotations

import re

from . import errors

TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# method SP request-target SP HTTP-version (RFC 9112 §3), the method any token (RFC 9110 §9.1),
# the target printable ASCII (RFC 9112 §3.2: no CTL, space or raw non-ASCII), one SP each; only
# empty lines (CRLF) may come before it (RFC 9112 §2.2), which the parser skips.
REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") ([\x21-\x7e]+) HTTP/[0-9]\.[0-9]")
SIMPLE_REQUEST_LINE = re.compile(TOKEN + rb" [\x21-\x7e]+")  # HTTP/0.9's: 505
# what the start of a request line may look like before it ends (anything else is 400 at once)
REQUEST_LINE_PREFIX = re.compile(
    rb"(?:" + TOKEN + rb"(?: (?:[\x21-\x7e]+(?: (?:H(?:T(?:T(?:P(?:/[0-9.]*)?)?)?)?)?)?)?)?)?"
)
# chunk-size [ chunk-ext ] (RFC 9112 §7.1, §7.1.1): BWS around ";" and "=", a token name, a
# token or quoted-string value. A name is required ("3;" and "3;=x" are refused).
QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
CHUNK_LINE = (
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*"
    + TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + TOKEN
    + rb"|"
    + QUOTED
    + rb"))?)*"
)
# what an unfinished chunk-size line may hold (the full grammar is checked once it ends)
CHUNK_LINE_PREFIX = rb"(?:[0-9A-Fa-f]+[\t \x21-\x7e\x80-\xff]*)?"
# a trailer field line: field-name ":" OWS field-value OWS (RFC 9110 §5.1, §5.5); no obs-fold
FIELD_LINE = re.compile(rb"(" + TOKEN + rb"):[\t\x20-\x7e\x80-\xff]*")


# The methods llhttp parses in HTTP mode; another token is shown to it as GET (see the module
# docstring). Case-sensitive, as methods are (RFC 9110 §9.1).
LLHTTP_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    b"SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    b"SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)


SERVED_VERSIONS = {"1.1": "1.1", "1.0": "1.0"}  # the usual ones, without parsing


def check_request_line(line: bytes) -> tuple[bytes, bytes]:
    """(method, target) of a complete request-line, or the refusal (RFC 9112 §3)."""
    match = REQUEST_LINE.fullmatch(line)
    if match is None:
        if SIMPLE_REQUEST_LINE.fullmatch(line):
            raise errors.VersionNotSupported(
                "A request line without an HTTP version (HTTP/0.9) is not supported."
            )
        raise errors.BadRequest(f"Malformed request line {line[:80]!r} (RFC 9112 §3).")
    return match.group(1), match.group(2)


def check_line_start(buf: bytearray, start: int) -> None:
    """Refuse at once a request line that can no longer become valid (a CR or LF before the
    method, not a token, ...). Its first 512 bytes say enough; the rest waits for its end."""
    end = min(len(buf), start + 512)
    if end > start and buf[end - 1] == 13:
        end -= 1  # its LF may follow
    if not REQUEST_LINE_PREFIX.fullmatch(buf, start, end):
        raise errors.BadRequest(f"Malformed request line {bytes(buf[start:end])[:80]!r}.")


def check_line_endings(buf: bytearray, start: int) -> int:
    """Lines end in CRLF (RFC 9112 §2.2): a bare LF or CR is refused as soon as it arrives,
    not when the section is complete (it never would be). Checks ``buf[start:]`` (``start``
    where the last call stopped) and returns where the next call starts: a final CR waits."""
    pairs = buf.count(b"\r\n", start)
    if buf.count(b"\n", start) != pairs or buf.count(b"\r", start, len(buf) - 1) != pairs:
        raise errors.BadRequest("A bare CR or LF in a head or trailer section (RFC 9112 §2.2).")
    return len(buf) - 1 if buf.endswith(b"\r") else len(buf)


_CHUNK_LINE = re.compile(CHUNK_LINE)
_CHUNK_LINE_PREFIX = re.compile(CHUNK_LINE_PREFIX)


def check_chunk_line(line: bytes, *, complete: bool) -> bytes:
    """The chunk-size of a chunk-size line, or the refusal (strict RFC 9112 §7.1.1 grammar);
    for an incomplete line, refuse at once what can no longer become valid."""
    if complete:
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            raise errors.BadRequest(
                f"Malformed chunk-size line {line[:80]!r} (RFC 9112 §7.1, §7.1.1)."
            )
        return match.group(1)
    if not _CHUNK_LINE_PREFIX.fullmatch(line.rstrip(b"\r")):
        raise errors.BadRequest(f"Malformed chunk-size line {line[:80]!r} (RFC 9112 §7.1).")
    return b""
