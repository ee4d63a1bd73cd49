"""The policy base: what every proxy delegates to.

A proxy (``_proxy.Proxy``) owns no state of its own beyond ``_self_policy``; a ``Policy`` holds the
factory, the instances, the locks and the counters.

Override surface (what a policy subclass defines)
-------------------------------------------------
* ``USE``: the policy's use of an instance, stated once (see ``_use``): statements that *get* an
  instance for the calling thread and *put* it back, ok or broken. Every path is compiled from
  it: forwarders, ``call``, ``apply`` (special methods), ``get``/``put`` (blocks, derived
  objects, awaited calls). Optionally ``USE_HEALTH`` (or ``use_for``: pooled composes variants)
  for the same use with health checks or pins, compiled only for a proxy that needs them.
* ``prime()``: create an instance where the next ``get`` finds it, without a use, so a first
  call can learn the client type, install the forwarders and run with a single acquisition.
* ``dispose(final)``: close the instances, without closing one under a running call.
* ``renew(drop)``: the one reset hook, for creation, a fork child (``after_fork``: drop the
  inherited instances *without closing them*; see ``_fork`` for how a fork is detected) and
  gevent's patch (``green_reset``: keep them); it makes every lock and thread-local again.
* ``live()``: how many instances it holds; ``existing()``: the calling thread's instance if one
  exists (what ``proxy.__wrapped__`` shows; never creates).
* ``inherited()``: in a fork child, before ``renew(drop=True)``, every instance it holds (the
  parent's), which ``_fork.keep`` keeps alive and unfinalized (default: ``existing()``'s).
* ``on_lost(obj)``: a block's or a derived object's error showed its pinned instance dead
  (``_uses``): discard it now where the next use must reach a slow path that refuses
  (``per_thread``, ``locked``, ``per_process``); ``pooled``'s pinned get refuses by itself.
* optionally ``shutdown()`` (interpreter exit, default ``dispose(True)``), ``aget()`` (a ``get``
  that must not block an event loop), ``holds_across_await`` (locked: False).

Uses that outlive a call (blocks, derived objects, iterators, awaitables) are ``_uses``'s: a
policy only provides ``pins`` (the context's pinned instance, which a policy's ``get`` may
consult: ``pooled`` does, from the start) and ``held`` (open holds per instance: health checks
never retire an instance under one).

Caller surface (what the proxy, ``control`` and ``_escape`` use)
----------------------------------------------------------------
``get()``, ``put(obj, token, broken)``, ``call(name, args, kwargs)``, ``apply(func, *args)``,
``forwarder(name)``, ``async_forwarder(name)``, ``attribute(name)``, ``set_attribute(name,
value)``, ``peek()``, ``stats()``; and for subclasses ``create()``, ``close_instance()``,
``counters`` (``_counters``), ``rebind()``.

Vocabulary (one name per concept, in every policy)
--------------------------------------------------
* **instance**: one client object the factory made; a proxy stands for its policy's instances.
* **create**: call the factory (``create()``, counted); ``create_<where>()`` is a policy's slow
  path that creates one where its ``get`` will find it (``create_instance`` in ``_single``,
  ``create_for_thread``, ``create_for_loop``, pooled's ``_create_in_slot``).
* **use**: what ``get`` starts and ``put`` ends; a use that outlives its call is a *hold* on the
  context's *pin* (``_uses``).
* **broken**: an error that ``is_broken(exc, obj)`` (``discard_on``, ``_discard``) accepts: by
  default the profile's judgement that the connection is dead (``_disconnect``).
* **discard**: close a broken instance and forget it (``stats().discarded``); the next use
  creates another.
* **retire**: replace an instance a health check found too old, idle or dead (``_health``).
* **dispose**: close the instances on request (``safeclients.dispose``); ``final`` forbids new
  ones.
* **drop**: forget an instance *without* closing it (a fork child's inherited ones).
* **renew**: make the locks and thread-locals again (creation, fork, gevent's patch).

Which thread runs what: the compiled paths run in request threads; ``dispose`` in whichever
thread calls ``safeclients.dispose`` (or the interpreter's exit); ``after_fork`` in the fork
child's first caller, with no other thread of the child inside the policy yet.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import textwrap
import weakref
from asyncio.events import _get_running_loop
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ClassVar, Generic, TypeVar

from safeclients import _check, _fork, _uses, profiles
from safeclients._calls import CallThrough
from safeclients._counters import Counters
from safeclients._discard import DiscardOn, default_discard, discard_predicate
from safeclients._escape import watched_call
from safeclients._factory import annotated_type, check_factory
from safeclients._health import Health, with_profile_interval
from safeclients._shutdown import at_loop_shutdown
from safeclients._use import Use, compiled
from safeclients.errors import FactoryError, PoolClosed
from safeclients.stats import Stats

T = TypeVar("T")

log = logging.getLogger("safeclients")


class Policy(Generic[T]):
    """Base of the policies; see the module docstring for the two surfaces."""

    kind: ClassVar[str] = "policy"
    USE: ClassVar[Use]
    #: The use with health checks (``_health``): compiled only for a proxy that has them.
    USE_HEALTH: ClassVar[Use | None] = None
    #: Whether ``async with checkout(proxy)`` is allowed: only where nothing is held across an
    #: await (``per_loop``); a lock or a slot held across one is the lead's open question.
    async_blocks: ClassVar[bool] = False
    #: Whether the tasks of one thread share an instance by design (``per_loop``, and
    #: ``per_thread``, which promises an instance per thread): check mode's tracker then keys
    #: by thread, not by task (``_check.Tracker``).
    tasks_share: ClassVar[bool] = False

    # Bound at creation from the compiled USE (instance attributes: one dict lookup per use).
    get: Callable[[], tuple[Any, Any]]
    put: Callable[[Any, Any, bool], None]
    call: Callable[[str, tuple[Any, ...], dict[str, Any]], Any]
    apply: Callable[..., Any]

    def __init__(
        self,
        factory: Callable[[], T] | None,
        *,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
        instance: T | None = None,
        checkable: bool = True,
    ) -> None:
        if factory is not None:
            check_factory(self.kind, factory)
        if close is not None and not callable(close):
            raise TypeError(f"close must be a callable taking the client, got {close!r}")
        self._factory = factory
        self._close_fn = close
        # What safeclients knows of the client type (safeclients.profiles), once it is known:
        # its disconnect judgement is the default discard_on, its close replaces obj.close().
        self.profile: profiles.Profile | None = None
        self.is_broken = discard_predicate(discard_on, self._default_broken)
        self.client_type: type | None = factory if isinstance(factory, type) else None
        # The type a factory's return annotation promises: known before any instance exists, so
        # the forwarders are installed up front and introspection (isinstance, doctest) creates
        # nothing. The first real instance corrects it if it is a subclass.
        self._provisional = False
        if self.client_type is None and factory is not None:
            self.client_type = annotated_type(factory)
            self._provisional = self.client_type is not None
        if instance is not None:
            self.client_type = type(instance)
        # The health options the app gave (None: a policy without health options); the one in
        # force (``health``) takes the client profile's check interval where the app gave none.
        self._given_health: Health | None = getattr(self, "health", None)
        if self.client_type is not None:
            self._learn_profile()
        # A weak reference to the proxy (set by make_proxy): a fluent call gets it back.
        self.proxy_ref: Callable[[], Any] = lambda: None
        # Reinstalls the forwarders on the proxy class (set by make_proxy; see rebind).
        self.respecialise: Callable[[type], None] = lambda client_type: None
        # Called once with the type of the first instance (the proxy installs fast forwarders).
        self.on_first_instance: Callable[[type], None] | None = None
        self.tracker: _check.Tracker | None = (
            _check.Tracker(self.kind, tasks=not self.tasks_share)
            if checkable and _check.enabled()
            else None
        )
        self._final = False
        # Per context (thread, greenlet, task): the instance its open uses hold (``_uses``).
        self.pins: ContextVar[_uses.Pin | None] = ContextVar(
            f"safeclients.{self.kind}.pin", default=None
        )
        # Per context: the `with proxy:` blocks open, innermost last (``_uses.block_stack``).
        self.blocks = _uses.block_stack(self.kind)
        self._reset_common()
        self.renew(drop=True)
        self._bind_use()
        _fork.register(self)

    def _learn_profile(self) -> None:
        """The client type is known (or corrected): its profile, and with it the profile's
        check interval (``with_profile_interval``). Slow path only."""
        self.profile = profiles.profile_for(self.client_type) if self.client_type else None
        if self._given_health is not None:
            interval = self.profile.check_interval if self.profile is not None else None
            self.health = with_profile_interval(self._given_health, interval)

    @property
    def effective_check(self) -> Callable[[Any], object] | None:
        """The health check in force: the explicit ``check=``, else the client profile's."""
        health: Health | None = getattr(self, "health", None)
        if health is not None and health.check is not None:
            return health.check
        return self.profile.check if self.profile is not None else None

    def _selected_use(self) -> Use:
        health: Health | None = getattr(self, "health", None)
        checked = health is not None and (health.active or self.effective_check is not None)
        return self.use_for(health=checked)

    def use_for(self, *, health: bool) -> Use:
        """The ``Use`` to compile for these options (override: pooled composes variants)."""
        if health and self.USE_HEALTH is not None:
            return self.USE_HEALTH
        return self.USE

    def rebind(self) -> None:
        """Options changed (a health check from the profile, learnt from the first instance):
        recompile the paths and reinstall the forwarders; calls already running finish on the
        old ones. Never inside a request after the first instance."""
        if self._selected_use() is self._bound_use:
            return
        self._bind_use()
        if self.client_type is not None:
            self.respecialise(self.client_type)

    def _bind_use(self) -> None:
        """Bind the paths compiled from the selected ``Use`` to this policy (at creation, and
        again if the client's profile, learnt from the first instance, brings a health check)."""
        use = self._bound_use = self._selected_use()
        # Nothing to give back after a call that worked (``put_ok`` empty: per_thread,
        # per_process, per_loop): an awaitable needs no hold, only its errors count (_escape).
        self.nothing_to_give_back = not textwrap.dedent(use.put_ok).strip()
        paths = compiled(use, self.kind, self.tracker is not None)
        args = (self, self.is_broken, self.tracker)
        self._paths = paths
        self.get = paths.makers["get"](*args, None)
        self.put = paths.makers["put"](*args, None)
        self.call = paths.makers["call"](*args, None)
        self.apply = paths.makers["apply"](*args, None)

    # -- shared state --------------------------------------------------------------------------

    @property
    def type_is_provisional(self) -> bool:
        """The client type comes from the factory's annotation; the first instance may refine it."""
        return self._provisional

    @property
    def replaceable(self) -> bool:
        """Whether a closed instance can be replaced: only with a factory to make a new one."""
        return self._factory is not None

    def _reset_common(self) -> None:
        """(Re)initialise the counters and the hold table; creation and fork child."""
        self.counters = Counters()
        # Async closes under way (``_await_close``), kept alive until they end.
        self._async_closes: set[asyncio.Task[None]] = set()
        # Closes cancelled before they ended, to run again at their loop's shutdown.
        self._late_closes: set[Any] = set()
        # id(instance) -> the loop it is bound to (``watched``), and each loop's shutdown
        # steps that retire them.
        self._loop_bound: dict[int, asyncio.AbstractEventLoop] = {}
        self._loop_ends: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Any]] = (
            weakref.WeakKeyDictionary()
        )
        # id(instance) -> how many pins (any context) hold it now; guarded by _uses._count_lock.
        self.held: dict[int, int] = {}
        # Lost pins still open (``_uses.lose``), and ids of held instances discarded by another
        # context (``_uses.lose_pinned``); both guarded by _uses._count_lock.
        self.lost_open = 0
        self.gone: set[int] = set()
        if self.tracker is not None:
            self.tracker.reset()

    #: Whether ``held`` counts the open holds per instance (``_uses``; per_thread's health).
    track_holds: ClassVar[bool] = False
    #: Whether ``on_pin`` is called for each new pin (``_uses``; locked).
    pin_hook: ClassVar[bool] = False
    #: Whether a use may last across an ``await`` (``locked`` says no: see ``_escape``).
    holds_across_await: ClassVar[bool] = True
    #: Whether ``get`` may wait (``pooled``): then an ``async def`` client method gets an
    #: ``async_forwarder``, which waits off the event loop; elsewhere the ordinary forwarder gets
    #: the instance at call time (``per_loop``: the running loop's) and the awaitable it returns
    #: holds it until awaited (``_escape``).
    async_gets: ClassVar[bool] = False

    def _default_broken(self, exc: BaseException, obj: Any) -> bool:
        """The default ``discard_on``: the profile's ``disconnect`` judgement of ``exc`` on
        ``obj`` (error code, connection state, reply code: ``_disconnect``) where it has one;
        else the generic disconnect classes, plus the profile's ``broken`` classes."""
        profile = self.profile
        if profile is not None and profile.disconnect is not None:
            return profile.disconnect(exc, obj)
        if default_discard(exc):
            return True
        return profile is not None and profiles.broken_by(profile, exc)

    def own_proxy(self) -> Any:
        """The proxy of this policy (a fluent call's result is mapped back to it)."""
        return self.proxy_ref()

    def closed_error(self) -> PoolClosed:
        return PoolClosed(
            f"this {self.kind} proxy was disposed with final=True (or the interpreter is "
            f"shutting down): create a new proxy instead of reusing it"
        )

    def create(self) -> T:
        """Call the factory: one new instance for this process. Raises what the factory raises.

        A factory that is async (it returned a coroutine: ``async def``, ``asyncpg.connect``)
        is refused with ``FactoryError``: a sync use cannot await it, and a coroutine taken for
        the client fails on every call. ``per_loop`` and ``pooled`` await one, in the loop that
        will use the instance (``call_factory`` and ``adopt`` are the two halves). A client
        that is merely awaitable as well (``redis.asyncio.Redis``) is an instance as it is."""
        made = self.call_factory()
        if inspect.iscoroutine(made) or isinstance(made, asyncio.Future):
            if inspect.iscoroutine(made):
                made.close()  # never to be awaited: no "never awaited" warning
            raise FactoryError(
                f"the factory {self._factory_name()} passed to {self.kind}() is async (it "
                f"returned a {type(made).__name__}): a {self.kind} proxy makes its "
                f"instances in sync code, where nothing can await it; use safeclients.per_loop or "
                f"safeclients.pooled, which await the factory in the loop that will use the "
                f"instance"
            )
        return self.adopt(made)

    def _being_made(self) -> FactoryError:
        """A sync use needs an instance an async factory is still making (per_loop, pooled)."""
        return FactoryError(
            f"the factory {self._factory_name()} of a {self.kind} proxy is async and the "
            f"instance this use needs is still being awaited: a sync use (a `with` block, a "
            f"special method) cannot wait for it; use `async with safeclients.checkout(proxy)` "
            f"or await a call"
        )

    def call_factory(self) -> Any:
        """The factory's result, as it is (an awaitable if the factory is async)."""
        if self._final:
            raise self.closed_error()
        factory = self._factory
        if factory is None:
            raise FactoryError(
                f"this {self.kind} proxy wraps an existing instance and has no factory to create "
                f"a new one: pass a factory (a function or class returning the client) instead"
            )
        return factory()

    def adopt(self, obj: Any) -> T:
        """Count a new instance the factory made (awaited, for an async one)."""
        if obj is None:
            raise FactoryError(
                f"the factory {self._factory_name()} passed to {self.kind}() returned None "
                f"instead of a client"
            )
        self.counters.created()
        self.noticed(obj)
        if self.tracker is not None:
            self.tracker.created(obj)
        return obj  # type: ignore[no-any-return]

    def _factory_name(self) -> str:
        factory = self._factory
        return str(getattr(factory, "__qualname__", repr(factory)))

    def noticed(self, obj: object) -> None:
        """Record the client type the first time an instance is seen (slow path only)."""
        if self.client_type is None or self._provisional:
            self.client_type = type(obj)
            self._provisional = False
            self._learn_profile()
            if self._selected_use() is not self._bound_use:
                self._bind_use()  # the forwarders are installed right after, by the hook
        hook, self.on_first_instance = self.on_first_instance, None
        if hook is not None:
            hook(type(obj))

    def close_instance(self, obj: T, *, discarded: bool) -> bool:
        """Close an instance this process created; a failing close is logged and contained.

        Returns whether the close succeeded; only a close that succeeded is counted as closed
        (or discarded). A ``BaseException`` from the close (``KeyboardInterrupt``) is re-raised
        after the bookkeeping, so no slot or record is lost to it.
        """
        if self.tracker is not None:
            self.tracker.forget(obj)
        interrupted: BaseException | None = None
        ok = False
        try:
            if _uses.looks_closed(obj):
                pass  # its own __exit__ (or the server) closed it: a second close may raise
            else:
                loop = _get_running_loop()
                result = self._close_call(obj)
                if inspect.isawaitable(result):
                    self._await_close(obj, result, loop, discarded=discarded)
                    return True  # counted when the close has been awaited
            ok = True
        except Exception as exc:
            log.warning(
                "safeclients: closing a %s held by a %s proxy raised %s: %s; the instance is "
                "dropped",
                type(obj).__name__,
                self.kind,
                type(exc).__name__,
                exc,
            )
        except BaseException as exc:
            interrupted = exc
        self.counters.closed(ok, discarded=discarded)
        if interrupted is not None:
            raise interrupted
        return ok

    def _close_call(self, obj: Any) -> object:
        """Call the instance's close (``close=``, the profile's, else its own ``aclose()`` or
        ``close()``) and return what it returns (an awaitable for an async client)."""
        if self._close_fn is not None:
            return self._close_fn(obj)
        if self.profile is not None and self.profile.close is not None:
            return self.profile.close(obj)
        # An async client's own aclose() first (redis.asyncio's close() is a deprecated alias
        # of it; httpx.AsyncClient has only aclose()).
        close = getattr(obj, "aclose", None)
        if not callable(close):
            close = getattr(obj, "close", None)
        return close() if callable(close) else None

    def _await_close(
        self,
        obj: object,
        closing: Any,
        loop: asyncio.AbstractEventLoop | None,
        *,
        discarded: bool,
    ) -> None:
        """An async close (``await client.aclose()``): awaited in a task of the running loop,
        the instance's (a pooled instance is used in the loop of the thread that closes it),
        counted when it ends. With no loop running here, nothing can await it: it is closed
        unawaited (no "never awaited" warning), logged and counted as a failed close."""
        if loop is None:
            if inspect.iscoroutine(closing):
                closing.close()
            self._dropped_unclosed(
                obj,
                "is async, and no event loop runs in this thread to await it; the instance is "
                "dropped unclosed (dispose the proxy inside its loop, or use per_loop, which "
                "closes inside each loop)",
                discarded=discarded,
            )
            return

        async def awaited() -> None:
            await closing

        task = loop.create_task(awaited())
        self._async_closes.add(task)  # kept alive until it ends

        def done(task: asyncio.Task[None]) -> None:
            self._async_closes.discard(task)
            if task.cancelled():
                # Cancelled, most often by asyncio.run, which cancels the tasks left before it
                # shuts the loop down (a discard or an eviction just before the end): closed
                # again, from the top, at the loop's shutdown (never dropped unclosed).
                if inspect.iscoroutine(closing):
                    closing.close()  # unstarted: no "never awaited"; started: its finally runs
                self._close_at_shutdown(obj, discarded=discarded)
                return
            error = task.exception()
            if error is not None:
                log.warning(
                    "safeclients: closing a %s held by a %s proxy raised %r; the instance is "
                    "dropped",
                    type(obj).__name__,
                    self.kind,
                    error,
                )
            self.counters.closed(error is None, discarded=discarded)

        task.add_done_callback(done)

    def _dropped_unclosed(self, obj: object, why: str, *, discarded: bool) -> None:
        """An async close that cannot be awaited: logged, counted as a failed close."""
        log.warning(
            "safeclients: the close of a %s held by a %s proxy %s",
            type(obj).__name__,
            self.kind,
            why,
        )
        self.counters.closed(False, discarded=discarded)

    def _close_at_shutdown(self, obj: Any, *, discarded: bool) -> None:
        """In the loop's thread: close ``obj`` (awaited) at the running loop's shutdown."""

        async def close_again() -> None:
            ok = False
            try:
                result = self._close_call(obj)
                if inspect.isawaitable(result):
                    await result
                ok = True
            except Exception as exc:
                log.warning(
                    "safeclients: closing a %s held by a %s proxy at its loop's shutdown "
                    "raised %r; the instance is dropped",
                    type(obj).__name__,
                    self.kind,
                    exc,
                )
            finally:
                self.counters.closed(ok, discarded=discarded)
                self._late_closes.difference_update(mine)

        mine: list[Any] = []
        closer = at_loop_shutdown(close_again)
        if closer is None:
            self._dropped_unclosed(
                obj,
                "was cancelled and its loop runs no shutdown step to finish it; the instance "
                "is dropped unclosed",
                discarded=discarded,
            )
            return
        mine.append(closer)
        self._late_closes.add(closer)  # kept until the loop's shutdown runs it

    def stats(self) -> Stats:
        # live() outside the counters' lock: never nest it inside another lock.
        return self.counters.snapshot(self.kind, self.live())

    # -- override surface ----------------------------------------------------------------------

    def prime(self) -> None:
        raise NotImplementedError

    def dispose(self, final: bool) -> None:
        raise NotImplementedError

    def renew(self, *, drop: bool) -> None:
        """The one reset hook: make the policy's locks, conditions and thread-locals again, and
        with ``drop`` forget its instances too, without closing them. Runs at creation (``drop``:
        nothing to forget yet; a subclass sets its options before ``Policy.__init__``), in a fork
        child (``drop``: the instances are the parent's; see ``after_fork``), and after gevent
        patched ``threading`` (keep them: they are this process's; see ``green_reset``)."""

    def after_fork(self) -> None:
        """Fork child: drop inherited instances without closing them, and keep them alive so
        that their own finalizers never run here either (``_fork.keep``); replace every lock."""
        _fork.keep(self.inherited())
        self.renew(drop=True)
        self._reset_common()

    def inherited(self) -> list[Any]:
        """Fork child, before ``renew(drop=True)``: every instance the policy holds (the
        parent's), for ``_fork.keep``. Default: the one ``existing()`` shows."""
        try:
            obj = self.existing()
        except Exception:  # a policy with no single instance to show (or no loop running)
            return []
        return [] if obj is None else [obj]

    def shutdown(self) -> None:
        """Interpreter exit: ``dispose(final=True)``, not waiting on a thread stuck in a call."""
        self.dispose(True)

    def green_reset(self) -> None:
        """gevent just patched ``threading`` (see ``_green``): make locks and thread-locals
        again, greenlet-aware. Runs where ``patch_all()`` runs, before requests."""
        self.renew(drop=False)

    def live(self) -> int:
        raise NotImplementedError

    def peek(self) -> T:
        """The instance ``proxy.__wrapped__`` shows: one that exists already, for this thread;
        never created, waited for or locked. ``AttributeError`` when there is none."""
        if not _fork.ARMED[0]:
            _fork.check()
        obj = self.existing()
        if obj is None:
            raise AttributeError(
                f"this {self.kind} proxy has no instance for this thread yet (introspection "
                f"never creates one): use the proxy, or `with safeclients.checkout(proxy) as "
                f"client:`"
            )
        return obj

    def existing(self) -> T | None:
        """The instance this thread would use now, if one exists (``peek``)."""
        raise NotImplementedError

    # -- caller surface ------------------------------------------------------------------------

    def forwarder(self, name: str, method: object = None) -> Callable[..., Any]:
        """The class attribute for the client method ``name``: the use, specialised by name
        (and by ``method``'s parameters, when they are plain: see ``_use``)."""
        forward: Callable[..., Any] = self._paths.forwarder_maker(name, method)(
            self, self.is_broken, self.tracker, name
        )
        forward.__name__ = forward.__qualname__ = name
        return forward

    async def aget(self) -> tuple[Any, Any]:
        """``get`` for an ``await``-ed method: never blocks the event loop (pooled waits for a
        free instance in a worker thread)."""
        return self.get()

    def async_forwarder(self, name: str) -> Callable[..., Any]:
        """The class attribute for an ``async def`` client method of a policy whose ``get`` may
        wait (``async_gets``): the instance is taken without blocking the event loop, and the
        use lasts until the awaited call finishes, built from the same ``get``/``put``."""
        policy = self

        async def forward(proxy: object, /, *args: Any, **kwargs: Any) -> Any:
            obj, token = await policy.aget()
            try:
                result = await getattr(obj, name)(*args, **kwargs)
            except BaseException as exc:
                policy.put(obj, token, policy.is_broken(exc, obj))
                raise
            policy.put(obj, token, False)
            return result

        forward.__name__ = forward.__qualname__ = name
        return forward

    def watched(self, obj: T, token: Any, result: Any) -> Any:
        """An awaited call on an instance never given back (per_thread, per_process,
        guarded; per_loop has its own): the coroutine that awaits ``result`` and counts its
        errors. The instance's first awaited call in a loop binds it to that loop (when it is
        awaited: ``asyncio.run(client.get(1))`` makes the call before its loop runs)."""
        return self._awaited(obj, token, result)

    async def _awaited(self, obj: T, token: Any, result: Any) -> Any:
        self.bind_awaited(obj)
        return await watched_call(self, obj, token, result)

    def bind_awaited(self, obj: T) -> None:
        """In the loop that awaits a call on ``obj`` (``_awaited``, ``_escape.held_awaitable``):
        bind it to that loop (``_bind_to_loop_end``). pooled binds its own way (a free list per
        loop): nothing here."""
        loop = _get_running_loop()
        if loop is not None and self._loop_bound.get(id(obj)) is not loop:
            if is_async_client(type(obj)):  # a sync client's async helper binds it to nothing
                self._bind_to_loop_end(obj, loop)

    def _bind_to_loop_end(self, obj: T, loop: asyncio.AbstractEventLoop) -> None:
        """An async client belongs to the loop it is first awaited in: at that loop's shutdown
        (``asyncio.run`` ending), inside it, the instance is retired and its close awaited
        (``retire_at_loop_end``), so the next loop gets an instance of its own instead of one
        whose connections are "attached to a different loop". An instance bound to another
        loop still running (two threads' loops on one per_process instance) stays bound there.
        In the loop's thread; once per instance and loop."""
        bound = self._loop_bound
        key = id(obj)
        earlier = bound.get(key)
        if earlier is not None:
            if not earlier.is_closed():
                return
            # Its loop was closed by hand (``loop.close()`` with no shutdown step): the instance
            # is stale. Retired now, so the next use makes one for this loop (this call, made on
            # it already, meets the client's own error: one failure, then healed).
            del bound[key]
            self.retire_from_loop(obj)
            return
        try:
            ref: Callable[[], T | None] = weakref.ref(obj, lambda _: bound.pop(key, None))
        except TypeError:  # not weakly referenceable: held until the loop's shutdown

            def ref() -> T | None:
                return obj

        loop_ref = weakref.ref(loop)  # the shutdown step must not keep its loop alive

        async def retire() -> None:
            if bound.get(key) is loop_ref():
                del bound[key]
            target = ref()
            if target is not None:
                await self.retire_at_loop_end(target)

        closer = at_loop_shutdown(retire)
        if closer is None:
            return  # a loop with no shutdown step: nothing to bind to
        bound[key] = loop
        self._loop_ends.setdefault(loop, []).append(closer)  # kept until the loop goes

    async def retire_at_loop_end(self, obj: T) -> None:
        """Inside a loop's shutdown: ``obj``, bound to that loop, is retired if it is still in
        use by this policy, its close awaited there."""
        if self.retire_from_loop(obj):
            await self.closes_awaited()

    def retire_from_loop(self, obj: T) -> bool:
        """``obj``'s loop is ending or gone: take it out of use and close it (an async close
        runs in a task of the running loop). Whether it was still in use (override; default:
        nothing to retire)."""
        return False

    async def closes_awaited(self) -> None:
        """Await the async closes under way (in the running loop's shutdown: a task made then
        would not run otherwise)."""
        closing = list(self._async_closes)
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)

    def attribute(self, name: str) -> Any:
        """``proxy.name`` for a name with no fast forwarder: a value, or a call-through."""
        value = self.apply(getattr, name)
        if self.async_gets and inspect.iscoroutinefunction(value):
            return functools.partial(self.async_forwarder(name), self.own_proxy())
        if callable(value) and not isinstance(value, type):
            return CallThrough(self, (name,), value)
        return value

    def on_pin(self, pin: _uses.Pin) -> None:
        """A use began that outlives its call (``_uses.begin``); ``locked`` notes who holds its
        lock. Default: nothing."""

    def on_lost(self, obj: Any) -> None:
        """A derived object's (or a block's) error showed its pinned instance dead
        (``_uses.lose``): discard it now, so that the context's next use reaches the slow path
        that refuses (``_uses.refuse_lost``). Default (pooled): nothing; the pinned get refuses
        and the pin's end discards it."""

    def set_attribute(self, name: str, value: Any) -> None:
        """``proxy.name = value``: on the instance this context would use now."""
        self.apply(setattr, name, value)

    def del_attribute(self, name: str) -> None:
        """``del proxy.name``: on the instance this context would use now."""
        self.apply(delattr, name)


def is_async_client(kind: type | None) -> bool:
    """Whether instances of ``kind`` are async clients: their life is async (``async with``, or
    a ``close``/``aclose`` that is a coroutine function: redis.asyncio, asyncpg, httpx, aiohttp),
    so each belongs to the loop it was made in. A sync client with an async method or two is
    not one. Once per client type (slow path)."""
    if kind is None:
        return False
    known = _ASYNC_CLIENTS.get(kind)
    if known is not None:
        return known
    _ASYNC_CLIENTS[kind] = found = any(
        inspect.iscoroutinefunction(inspect.getattr_static(kind, name, None))
        for name in ("__aenter__", "aclose", "close")
    )
    return found


# Client type -> whether it is async (``is_async_client``); weak: classes made at run time go.
_ASYNC_CLIENTS: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


__all__ = ["Policy", "is_async_client", "log"]
