"""The HTTP/1.1 request rules we enforce on top of llhttp (RFC 9112, RFC 9110): pure functions.

Sans-IO and stateless; called by :class:`server.parser.RequestParser` (in the thread that holds
the connection) once a request line, a head or a trailer field line is complete. Each refusal is an
:class:`~server.errors.HTTPError` whose message names the RFC section. :data:`RULES` lists every
rule with its section, what we do, and the unit test that pins it (``tests/server/test_http11.py``);
llhttp's own strict checks (``lenient`` flags all off) are listed too, marked ``llhttp``.

Choices where the RFCs leave room, checked against h11, llhttp and waitress:

* A fragment in the request-target (not in the grammar, but sent by some clients) is accepted
  and dropped: ``PATH_INFO`` and ``QUERY_STRING`` never include it (llhttp and h11 accept it,
  waitress drops it).
* ``identity`` (removed by RFC 7230) is ignored inside a list that ends in ``chunked``, as older
  clients send it; alone it is a list whose final coding is not ``chunked``: 400 (RFC 9112 §6.3).
* A transfer coding we cannot decode before a final ``chunked`` (``gzip, chunked``) is 501
  (RFC 9112 §6.1, as h11 and waitress answer).
* Any token is a method (RFC 9110 §9.1): one the server has never heard of goes to the
  application, which decides (405, 501, or serves it), as gunicorn and waitress do.
* The request line is strict: only CRLF pairs before it (a lone CR or LF is 400), one SP
  between its parts (RFC 9112 §3 allows a server to accept more whitespace; we do not, as h11).
* Chunk extensions follow the RFC 9112 §7.1.1 grammar (BWS, token names, token or quoted
  values) and are ignored; a line over ``CHUNK_LINE_MAX`` or a request's extensions over
  ``--max-header-bytes`` is 400 (llhttp refuses BWS, and bounds nothing).
* Trailer fields are accepted and dropped, except framing and connection fields (400); the
  trailer section counts against the header limits (431).
* ``Upgrade`` is ignored (RFC 9110 §7.8 lets a server ignore it): the request, body included,
  is served like any other and the connection stays HTTP (llhttp drops the body of an
  upgrade request; HTTP/1.0 must ignore Upgrade anyway).
* ``Content-Length`` with any number of leading zeros is its number (RFC 9110 §8.6).
* ``HTTP/1.x`` with x > 1 is served as HTTP/1.1 (RFC 9110 §2.5, §6.2); another major version
  is 505.
* Duplicate ``Content-Length`` is refused even with equal values (RFC 9110 §8.6 allows either;
  llhttp refuses, and a smuggling front end is the reason to).
* A valid ``CONNECT`` (authority-form, port 1-65535) goes to the application, which decides
  (as waitress does), with the authority ``host:port`` as ``PATH_INFO`` (as hypercorn's path);
  the connection closes after the response (what follows would be tunnel data).
* A second ``Content-Type`` is refused like a second ``Host`` (waitress refuses both; a singleton
  field with two values cannot be read one way, RFC 9110 §5.3).
"""

from __future__ import annotations

import dataclasses
import re
from enum import Enum

from . import errors, lines


class TargetForm(Enum):
    ORIGIN = "origin"  # /path?query          (RFC 9112 §3.2.1)
    ABSOLUTE = "absolute"  # http://host/path     (§3.2.2)
    AUTHORITY = "authority"  # host:port, CONNECT   (§3.2.3)
    ASTERISK = "asterisk"  # *, OPTIONS           (§3.2.4)


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A request-target taken apart: the path and query (fragment dropped), and for the
    absolute-form the authority, which replaces the Host field (RFC 9112 §3.2.2)."""

    form: TargetForm
    path: bytes
    query: bytes
    authority: bytes | None = None


# (rule, RFC section, what happens, the test in tests/server/test_http11.py)
RULES: tuple[tuple[str, str, str, str], ...] = (
    (
        "origin-form with query and fragment",
        "RFC 9112 §3.2.1, RFC 9110 §4.2.5",
        "accepted; fragment dropped from PATH_INFO and QUERY_STRING",
        "test_origin_form",
    ),
    (
        "absolute-form",
        "RFC 9112 §3.2.2",
        "accepted (http, https); its authority replaces Host",
        "test_absolute_form",
    ),
    (
        "absolute-form with another scheme or userinfo",
        "RFC 9112 §3.2.2, RFC 9110 §4.2.4",
        "400",
        "test_absolute_form_refused",
    ),
    (
        "authority-form only with CONNECT",
        "RFC 9112 §3.2.3",
        "400 (llhttp for non-CONNECT)",
        "test_authority_form_only_with_connect",
    ),
    (
        "CONNECT needs authority-form host:port; valid CONNECT",
        "RFC 9112 §3.2.3, RFC 9110 §9.3.6",
        "400; valid: to the application, PATH_INFO is host:port, then close",
        "test_connect",
    ),
    ("asterisk-form only with OPTIONS", "RFC 9112 §3.2.4", "400 otherwise", "test_asterisk_form"),
    (
        "request-target characters",
        "RFC 9112 §3.2, RFC 3986",
        "400 (llhttp)",
        "test_target_characters",
    ),
    (
        "request-target longer than we parse",
        "RFC 9112 §3",
        "414 (over --max-header-bytes)",
        "test_target_too_long",
    ),
    (
        "a singleton field (Content-Type) sent twice",
        "RFC 9110 §5.3",
        "400",
        "test_duplicate_singleton_fields",
    ),
    ("HTTP/1.1 needs exactly one valid Host", "RFC 9112 §3.2", "400", "test_host_rules"),
    (
        "any token is a method",
        "RFC 9110 §9.1",
        "to the application (it decides: 405, 501...); not a token: 400",
        "test_any_token_method",
    ),
    (
        "strict request line: only CRLF before it, one SP between parts",
        "RFC 9112 §2.2, §3",
        "400 (a lone CR or LF, extra spaces)",
        "test_request_line_strict",
    ),
    (
        "HTTP/1.x minor > 1 served as 1.1; other major",
        "RFC 9110 §2.5, §6.2",
        "1.1; 505",
        "test_versions",
    ),
    ("empty lines before the request-line", "RFC 9112 §2.2", "ignored", "test_leading_empty_lines"),
    (
        "chunk extensions (BWS, token names, token or quoted values)",
        "RFC 9112 §7.1.1",
        "accepted and ignored; no name or bad syntax: 400",
        "test_chunk_extensions",
    ),
    (
        "chunk-size line and chunk extensions bounded",
        "RFC 9112 §7.1.1",
        "400 over 4096 bytes a line or --max-header-bytes a request",
        "test_chunk_extensions_bounded",
    ),
    (
        "Transfer-Encoding final coding chunked",
        "RFC 9112 §6.3 (4)",
        "400 otherwise",
        "test_transfer_encoding_final_chunked",
    ),
    (
        "identity ignored before a final chunked",
        "RFC 9112 §6.1, RFC 7230 A.2",
        "accepted",
        "test_transfer_encoding_identity",
    ),
    ("transfer coding we cannot decode", "RFC 9112 §6.1", "501", "test_transfer_encoding_unknown"),
    ("chunked applied twice", "RFC 9112 §6.1, §7", "400", "test_transfer_encoding_chunked_twice"),
    ("Transfer-Encoding in HTTP/1.0", "RFC 9112 §6.1", "400", "test_transfer_encoding_http10"),
    (
        "Content-Length with Transfer-Encoding",
        "RFC 9112 §6.1, §6.3 (3)",
        "400",
        "test_content_length_with_transfer_encoding",
    ),
    (
        "duplicate or list Content-Length",
        "RFC 9110 §8.6, RFC 9112 §6.3 (5)",
        "400 (llhttp)",
        "test_content_length_duplicates",
    ),
    (
        "Content-Length not 1*DIGIT; leading zeros",
        "RFC 9110 §8.6",
        "400 (llhttp); any number of leading zeros accepted",
        "test_content_length_syntax",
    ),
    (
        "field name is a token, no whitespace before colon",
        "RFC 9110 §5.1, RFC 9112 §5.1",
        "400 (llhttp)",
        "test_field_names",
    ),
    (
        "field value: no CTL but HTAB, obs-text allowed, OWS trimmed",
        "RFC 9110 §5.5",
        "400 for CTL/NUL/bare CR (llhttp); OWS trimmed",
        "test_field_values",
    ),
    ("obs-fold", "RFC 9112 §5.2", "400 (llhttp)", "test_obs_fold"),
    (
        "framing and connection fields in trailers",
        "RFC 9110 §6.5.1",
        "400",
        "test_forbidden_trailer_fields",
    ),
    (
        "other trailer fields",
        "RFC 9112 §7.1.2, RFC 9110 §6.5.2",
        "accepted, dropped (never merged; WSGI has no place)",
        "test_allowed_trailer_fields",
    ),
    (
        "trailer section bounded",
        "RFC 9112 §7.1.2",
        "431 over --max-header-bytes or --max-headers (with the headers)",
        "test_trailer_section_bounded",
    ),
    (
        "Upgrade ignored",
        "RFC 9110 §7.8",
        "served as a plain request, body kept, connection stays HTTP",
        "test_upgrade_ignored",
    ),
    (
        "bare LF or CR line endings",
        "RFC 9112 §2.2 (MAY accept)",
        "400 as soon as it arrives",
        "test_bare_lf",
    ),
)

README_BEGIN = "<!-- rules: rendered from server/http11.py RULES (python -m server.http11) -->"
README_END = "<!-- end of rules -->"


def render_rules() -> str:
    """The :data:`RULES` table as Markdown, for server/README.md (its one source: a test
    checks the README holds exactly this, between README_BEGIN and README_END)."""
    lines = ["| rule | section | outcome | test |", "|---|---|---|---|"]
    for rule, section, outcome, test in RULES:
        lines.append(f"| {rule} | {section} | {outcome} | `{test}` |")
    return "\n".join(lines) + "\n"


# Fields refused in a trailer section (RFC 9110 §6.5.1 forbids many more to the sender; a
# recipient only has to not use them, RFC 9110 §6.5.2): message framing and connection
# handling, where an intermediary that merged them would frame or route differently than we do.
FORBIDDEN_TRAILERS = frozenset(
    {
        b"transfer-encoding",
        b"content-length",
        b"trailer",
        b"host",
        b"connection",
        b"keep-alive",
        b"upgrade",
        b"te",
    }
)

_SCHEMES = (b"http", b"https")
# uri-host [":" port] (RFC 3986 §3.2.2): reg-name / IPv4 / [IPv6]; no userinfo, no path.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?\Z")
_AUTHORITY_FORM = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+):[0-9]{1,5}\Z")


def split_target(method: str, target: bytes) -> Target:
    """Classify ``target`` by its form and take it apart, or refuse it (RFC 9112 §3.2)."""
    if target[:1] == b"/":
        if method == "CONNECT":
            raise errors.BadRequest("CONNECT needs the authority-form host:port (RFC 9112 §3.2.3).")
        return _path_and_query(TargetForm.ORIGIN, target)
    if target == b"*":
        if method != "OPTIONS":
            raise errors.BadRequest(
                f"The asterisk-form is only for OPTIONS, not {method} (RFC 9112 §3.2.4)."
            )
        return Target(TargetForm.ASTERISK, b"*", b"")
    if method == "CONNECT":
        port = target.rpartition(b":")[2]
        if not _AUTHORITY_FORM.match(target) or not 0 < int(port or b"0") <= 65535:
            raise errors.BadRequest("CONNECT needs the authority-form host:port (RFC 9112 §3.2.3).")
        return Target(TargetForm.AUTHORITY, target, b"")  # PATH_INFO: host:port
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise errors.BadRequest(
            f"The request-target {target[:80]!r} is not origin-, absolute-, "
            "authority- or asterisk-form (RFC 9112 §3.2)."
        )
    cut = min(
        (i for i in (rest.find(b"/"), rest.find(b"?"), rest.find(b"#")) if i >= 0),
        default=len(rest),
    )
    authority, rest = rest[:cut], rest[cut:]
    if not authority or b"@" in authority or not _HOST.match(authority):
        raise errors.BadRequest(
            f"The absolute-form authority {authority[:80]!r} is empty, has "
            "userinfo or is not host[:port] (RFC 9112 §3.2.2, RFC 9110 §4.2.4)."
        )
    if rest[:1] != b"/":
        rest = b"/" + rest  # an empty path is "/" (RFC 9112 §3.2.1)
    parts = _path_and_query(TargetForm.ABSOLUTE, rest)
    return dataclasses.replace(parts, authority=authority)


def _path_and_query(form: TargetForm, target: bytes) -> Target:
    target = target.partition(b"#")[0]  # the fragment is the client's business (RFC 9110 §4.2.5)
    path, _, query = target.partition(b"?")
    return Target(form, path, query)


def check_singletons(content_types: int) -> None:
    """RFC 9110 §5.3: a singleton field sent twice cannot be read one way; Content-Type here
    (Host: :func:`check_host`; Content-Length: llhttp)."""
    if content_types > 1:
        raise errors.BadRequest(
            f"The request has {content_types} Content-Type field lines; "
            "one is allowed (RFC 9110 §5.3)."
        )


def check_host(values: list[bytes], version: str, target: Target) -> None:
    """RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host field line, with a valid value
    (the absolute-form still needs one, whose value it then overrides)."""
    if len(values) > 1:
        raise errors.BadRequest(
            f"The request has {len(values)} Host field lines; one is allowed (RFC 9112 §3.2)."
        )
    if not values:
        if version == "1.1":
            raise errors.BadRequest("An HTTP/1.1 request without Host (RFC 9112 §3.2).")
        return
    if not _HOST.match(values[0]):
        raise errors.BadRequest(
            f"The Host value {values[0][:80]!r} is not host[:port] (RFC 9112 §3.2)."
        )


def transfer_chunked(values: list[bytes], version: str, has_content_length: bool) -> bool:
    """The Transfer-Encoding field lines' verdict: True for a chunked body, or a refusal.

    RFC 9112 §6.1 and §6.3: not in HTTP/1.0; not with Content-Length; the final coding must be
    chunked (``identity`` ignored), applied once; any other coding before it we cannot decode.
    """
    if not values:
        return False
    if version == "1.0":
        raise errors.BadRequest(
            "Transfer-Encoding in an HTTP/1.0 request: its framing is faulty (RFC 9112 §6.1)."
        )
    if has_content_length:
        raise errors.BadRequest("Content-Length together with Transfer-Encoding (RFC 9112 §6.3).")
    codings = [c.strip(b" \t").lower() for value in values for c in value.split(b",")]
    codings = [c for c in codings if c and c != b"identity"]  # empty list elements: RFC 9110 §5.6.1
    listed = b", ".join(values)[:80]
    if not codings or codings[-1] != b"chunked":
        raise errors.BadRequest(
            f"Transfer-Encoding {listed!r} does not end in chunked (RFC 9112 §6.3)."
        )
    if codings.count(b"chunked") > 1:
        raise errors.BadRequest(
            f"Transfer-Encoding {listed!r} applies chunked twice (RFC 9112 §6.1)."
        )
    if len(codings) > 1:
        raise errors.NotImplementedByServer(
            f"Transfer-Encoding {listed!r}: only chunked is supported (RFC 9112 §6.1)."
        )
    return True


def check_trailer_line(line: bytes) -> None:
    """One trailer field line: well formed (RFC 9110 §5.1, §5.5, RFC 9112 §5.2: no obs-fold),
    and not a framing or connection field (RFC 9110 §6.5.1), which only a request meant to
    smuggle would put there. Any other field is accepted, then dropped (RFC 9110 §6.5.2: WSGI
    has no place for it, and it is never merged into the headers)."""
    match = lines.FIELD_LINE.fullmatch(line)
    if match is None:
        raise errors.BadRequest(
            f"Malformed trailer field line {line[:80]!r} (RFC 9110 §5, RFC 9112 §5.2)."
        )
    if match.group(1).lower() in FORBIDDEN_TRAILERS:
        raise errors.BadRequest(
            f"The field {match.group(1)[:80]!r} is not allowed in a trailer section "
            "(RFC 9110 §6.5.1)."
        )


def version_served(major: int, minor: int) -> str:
    """The HTTP version we answer a request in: 1.0, 1.1 (also for 1.x, x > 1), else 505."""
    if major != 1:
        raise errors.VersionNotSupported(f"HTTP/{major}.{minor} is not supported (RFC 9110 §6.2).")
    return "1.0" if minor == 0 else "1.1"


if __name__ == "__main__":  # python -m server.http11: print the table for the README
    print(README_BEGIN)
    print(render_rules(), end="")
    print(README_END)
