"""The use of an instance, stated once per policy, compiled into every path that uses one.

Each policy states how it uses an instance as a :class:`Use`: Python statements that *get* one
for the calling thread (binding ``obj`` and ``token``), and that give it back after a call that
succeeded (``put_ok``) or raised one of ``discard_on`` (``put_broken``). :func:`compile_use`
turns that one statement into every path a proxy has:

* ``forwarder(name)``: the class attribute for a client method (``proxy.get(...)``);
* ``call(name, args, kwargs)``: a method with no forwarder (``CallThrough``);
* ``apply(func, *args)``: ``func(instance, *args)``, for the special methods;
* ``get()`` / ``put(obj, token, broken)``: the two halves, for blocks that hold an instance
  across several calls (``checkout()``, ``with proxy:``).

All five come from one template, so a rule added to the template (the fork check, the invariant
check of ``SAFECLIENTS_CHECK``, what counts as broken) holds on every path; the fast forwarder is
the general path specialised by name, never a hand copy of it. Why generated code rather than
``get()``/``put()`` calls from a generic forwarder: two extra Python calls cost about 45 % of a
``per_thread`` call (measured with ``python -m benchmarks --only micro``), and the forwarders
are the reason the proxies are cheap.

Under ``SAFECLIENTS_CHECK`` the same template is compiled with the tracker's ``enter``/``leave``
around each use: check mode runs the forwarders production runs, plus the checks.

The statements run with these names bound: ``policy`` (the policy), ``obj`` and ``token`` (what
``get`` bound), and in ``put_*`` nothing else. ``token`` is whatever ``put`` needs to give the
instance back (pooled: the free list it came from; locked: the lock it holds).

Which thread runs what: the compiled functions run in request threads; compilation runs once per
proxy, in whichever thread creates it (and again for each forwarder name, in the first thread
that uses that method).
"""

from __future__ import annotations

import inspect
import keyword
import textwrap
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from safeclients import _codegen, _context, _fork
from safeclients._escape import escaped
from safeclients._fork import ARMED
from safeclients._pending import PLAIN_OR_PENDING
from safeclients._uses import Pin, lose, refuse_lost


@dataclass(frozen=True)
class Use:
    """How a policy uses an instance: three fragments of Python statements (see the module)."""

    #: Bind ``obj`` (the instance for this use) and ``token``; may block, create, or raise.
    get: str
    #: Give ``obj`` back after a use that succeeded (or raised an error that is not broken).
    put_ok: str
    #: Close or discard ``obj`` after a use that raised one of ``discard_on``.
    put_broken: str


# One template for every path. `{action}` is what a use does with the instance; `{enter}` and
# `{leave}` are the SAFECLIENTS_CHECK tracker lines (empty in production).
_TEMPLATE = """\
def _make(policy, is_broken, tracker, name):
    def {fname}({params}):
        if not ARMED[0]:
            fork_check()
{get}
{enter}        try:
            result = {action}
        except BaseException as exc:
{leave}            if is_broken(exc, obj):
{put_broken}
            else:
{put_ok}
            raise
        if type(result) in PLAIN:
{leave_ok}{put_ok_after}
            return result
        return escaped(policy, obj, token, result, name, {proxy})
    return {fname}
"""

_GET_TEMPLATE = """\
def _make(policy, is_broken, tracker, name):
    def get():
        if not ARMED[0]:
            fork_check()
{get}
{enter_get}        return obj, token
    return get
"""

_PUT_TEMPLATE = """\
def _make(policy, is_broken, tracker, name):
    def put(obj, token, broken):
{leave_put}        if broken:
{put_broken}
        else:
{put_ok}
    return put
"""

# (function name, parameters, action, the proxy's name in scope) for each path. A forwarder is
# compiled per method name, so its call is an attribute access, not a getattr() call.
_PATHS = {
    "forwarder": ("forward", "proxy, /, {params}", "obj.{name}({args})", "proxy"),
    "call": ("call", "name, args, kwargs", "getattr(obj, name)(*args, **kwargs)", "None"),
    "apply": ("apply", "func, /, *args", "func(obj, *args)", "None"),
}


def _indent(code: str, spaces: int) -> str:
    body = textwrap.dedent(code).strip("\n") or "pass"
    return textwrap.indent(body, " " * spaces)


class _Empty:
    """The value a get's ``pop()`` of an empty free list stands for (never an instance)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<empty free list>"


EMPTY = _Empty()


class Compiled:
    """The makers compiled from one :class:`Use` (cached per policy class and check mode)."""

    def __init__(self, use: Use, kind: str, checked: bool) -> None:
        self._kind = kind
        # One globals dict for every function compiled from this use (see _codegen).
        self._scope = _codegen.scope(
            {
                "ARMED": ARMED,
                "fork_check": _fork.check,
                "monotonic": time.monotonic,
                # A pending call (``_pending``) holds no instance: returned as it is.
                "PLAIN": PLAIN_OR_PENDING,
                # An empty free list (pooled's get): the slow path runs outside the except.
                "EMPTY": EMPTY,
                "Pin": Pin,
                "lose": lose,
                "refuse_lost": refuse_lost,
                "escaped": escaped,
                # The calling task, thread or greenlet (guarded's "who is inside").
                "current_context": _context.current,
            }
        )
        self._fragments = {
            "get": _indent(use.get, 8),
            "put_ok": _indent(use.put_ok, 16),
            "put_broken": _indent(use.put_broken, 16),
            # An enter that raised is not left: the instance goes back, the error goes up.
            "enter": (
                "        try:\n"
                "            tracker.enter(obj)\n"
                "        except BaseException:\n"
                + _indent(use.put_ok, 12)
                + "\n            raise\n"
            )
            if checked
            else "",
            "leave": "            tracker.leave(obj)\n" if checked else "",
            "leave_ok": "            tracker.leave(obj)\n" if checked else "",
            "put_ok_after": _indent(use.put_ok, 12),
        }
        self.makers: dict[str, Callable[..., Any]] = {
            path: self._path(path, "") for path in ("call", "apply")
        }
        self._forwarders: dict[str, Callable[..., Any]] = {}
        get_source = _GET_TEMPLATE.format(
            get=self._fragments["get"], enter_get=self._fragments["enter"]
        )
        put_source = _PUT_TEMPLATE.format(
            leave_put="        tracker.leave(obj)\n" if checked else "",
            put_ok=_indent(use.put_ok, 12),
            put_broken=_indent(use.put_broken, 12),
        )
        self.makers["get"] = _codegen.build(get_source, f"{kind} get", self._scope)
        self.makers["put"] = _codegen.build(put_source, f"{kind} put", self._scope)

    def _path(self, path: str, name: str, params: str = "", args: str = "") -> Callable[..., Any]:
        fname, signature, action, proxy = _PATHS[path]
        source = _TEMPLATE.format(
            fname=fname,
            params=signature.format(params=params),
            action=action.format(name=name, args=args),
            proxy=proxy,
            **self._fragments,
        )
        return _codegen.build(source, f"{self._kind} {path} {name}".strip(), self._scope)

    def forwarder_maker(self, name: str, method: object = None) -> Callable[..., Any]:
        """The maker of the forwarder for method ``name`` (compiled once per name and shape).

        When ``method`` (the client class's function) takes only plain positional-or-keyword
        parameters without defaults, the forwarder takes exactly those: no ``*args``/
        ``**kwargs`` packing on every call (the bulk of a forwarder's own cost).
        """
        if not name.isidentifier():
            raise ValueError(f"not a method name: {name!r}")
        names = exact_parameters(method)
        params, args = (
            (", ".join(names), ", ".join(names))
            if names is not None
            else ("*args, **kwargs", "*args, **kwargs")
        )
        key = f"{name}({params})"
        maker = self._forwarders.get(key)
        if maker is None:
            maker = self._forwarders.setdefault(key, self._path("forwarder", name, params, args))
        return maker


# Names a forwarder's own code uses: a client parameter with one of them takes *args instead.
_RESERVED = frozenset(
    {
        "proxy",
        "policy",
        "is_broken",
        "tracker",
        "name",
        "obj",
        "token",
        "result",
        "exc",
        "pin",
        "Pin",
        "lose",
        "refuse_lost",
        "local",
        "ARMED",
        "fork_check",
        "get_ident",
        "current_context",
        "monotonic",
        "PLAIN",
        "escaped",
        "type",
        "list",
        "getattr",
    }
)


def exact_parameters(method: object) -> list[str] | None:
    """The parameter names after ``self`` if all are plain (no default, no */**), else None."""
    if not isinstance(method, types.FunctionType):
        return None
    try:
        parameters = list(inspect.signature(method).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    names = []
    for parameter in parameters:
        if (
            parameter.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD
            or parameter.default is not inspect.Parameter.empty
            or parameter.name in _RESERVED
            or keyword.iskeyword(parameter.name)
        ):
            return None
        names.append(parameter.name)
    return names


_compiled: dict[tuple[Use, str, bool], Compiled] = {}


def compiled(use: Use, kind: str, checked: bool) -> Compiled:
    """The compiled paths of ``use``; compiled once per (use, check mode) in the process."""
    key = (use, kind, checked)
    found = _compiled.get(key)
    if found is None:
        found = _compiled.setdefault(key, Compiled(use, kind, checked))
    return found


__all__ = ["EMPTY", "Use", "Compiled", "compiled"]
