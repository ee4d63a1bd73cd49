"""The HTTP/1.1 request rules we enforce on top of llhttp (RFC 9112, RFC 9110): pure functions.

Sans-IO and stateless; called by :class:`server.parser.RequestParser` (in the request thread
that owns the connection) once a head or a trailer field is complete. Each refusal is an
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
* An unknown method with a well-formed request line is 501 (RFC 9110 §9.1), not 400.
* ``HTTP/1.x`` with x > 1 is served as HTTP/1.1 (RFC 9110 §2.5, §6.2); another major version
  is 505.
* Duplicate ``Content-Length`` is refused even with equal values (RFC 9110 §8.6 allows either;
  llhttp refuses, and a smuggling front end is the reason to).
* A valid ``CONNECT`` (authority-form, port 1-65535) goes to the application, with an empty
  ``PATH_INFO``, which decides (as waitress does); the connection closes after the response
  (llhttp treats what follows as tunnel data).
* A second ``Content-Type`` is refused like a second ``Host`` (waitress refuses both; a singleton
  field with two values cannot be read one way, RFC 9110 §5.3).
"""

from __future__ import annotations

import dataclasses
import re
from enum import Enum

from . import errors


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
        "400; valid: to the application, PATH_INFO empty",
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
    ("unknown method, well-formed line", "RFC 9110 §9.1", "501", "test_unknown_method"),
    (
        "HTTP/1.x minor > 1 served as 1.1; other major",
        "RFC 9110 §2.5, §6.2",
        "1.1; 505",
        "test_versions",
    ),
    ("empty lines before the request-line", "RFC 9112 §2.2", "ignored", "test_leading_empty_lines"),
    ("chunk extensions", "RFC 9112 §7.1.1", "accepted and ignored", "test_chunk_extensions"),
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
    ("Content-Length not 1*DIGIT", "RFC 9110 §8.6", "400 (llhttp)", "test_content_length_syntax"),
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
    ("forbidden trailer fields", "RFC 9110 §6.5.1", "400", "test_forbidden_trailer_fields"),
    (
        "allowed trailer fields",
        "RFC 9110 §6.5",
        "accepted, dropped (WSGI has no place)",
        "test_allowed_trailer_fields",
    ),
    ("bare LF line endings", "RFC 9112 §2.2 (MAY accept)", "400 (llhttp strict)", "test_bare_lf"),
)

# Fields that must not be sent in a trailer section (RFC 9110 §6.5.1): framing, routing,
# request modifiers (controls, conditionals), authentication, content and connection handling.
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
        b"expect",
        b"max-forwards",
        b"cache-control",
        b"pragma",
        b"range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"if-range",
        b"authorization",
        b"proxy-authorization",
        b"cookie",
        b"set-cookie",
        b"content-type",
        b"content-encoding",
        b"content-range",
        b"content-location",
        b"age",
        b"expires",
        b"date",
        b"location",
        b"retry-after",
        b"vary",
        b"warning",
        b"www-authenticate",
        b"proxy-authenticate",
    }
)

_SCHEMES = (b"http", b"https")
# uri-host [":" port] (RFC 3986 §3.2.2): reg-name / IPv4 / [IPv6]; no userinfo, no path.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?\Z")
_AUTHORITY_FORM = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+):[0-9]{1,5}\Z")
# method SP request-target SP HTTP-version CRLF, the method any token (RFC 9112 §3, RFC 9110 §9.1)
REQUEST_LINE = re.compile(
    rb"(?:\r\n)*[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/[0-9]\.[0-9]\r?\n"
)
# what the start of such a line may look like before it ends (anything else is junk: 400 now)
REQUEST_LINE_PREFIX = re.compile(
    rb"(?:\r\n)*[!#$%&'*+\-.^_`|~0-9A-Za-z]*(?: [\x21-\x7e]*(?: [HTP/0-9.]*)?)?"
)


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
        return Target(TargetForm.AUTHORITY, b"", b"")
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


def check_trailer_field(name: bytes) -> None:
    """RFC 9110 §6.5.1: refuse a trailer field that must not be sent in trailers."""
    if name.lower() in FORBIDDEN_TRAILERS:
        raise errors.BadRequest(
            f"The field {name[:80]!r} is not allowed in a trailer section (RFC 9110 §6.5.1)."
        )


def version_served(major: int, minor: int) -> str:
    """The HTTP version we answer a request in: 1.0, 1.1 (also for 1.x, x > 1), else 505."""
    if major != 1:
        raise errors.VersionNotSupported(f"HTTP/{major}.{minor} is not supported (RFC 9110 §6.2).")
    return "1.0" if minor == 0 else "1.1"
