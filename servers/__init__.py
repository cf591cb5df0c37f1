"""socklab server designs: one wire protocol (servers.protocol), each design a process model composed
with a connection loop (servers.base explains the contract).

Run one with ``python -m servers DESIGN``; list them with ``python -m servers --list``.  Nothing in
this package imports locust: a server under test must measure its own concurrency model, not
gevent's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from servers.base import BaseServer


# The parts, by name.  Imported when a design is first composed, not with the registry: a process that
# only lists designs (the harness, Locust's) pays nothing for them.
@cache
def model_classes() -> dict[str, type]:
    """The process models, by the name a design's "MODEL+LOOP" uses (light modules: imported together)."""
    from servers.models.forks import ForkPerConnection, Preforked, PreforkedReuseport
    from servers.models.single import Single
    from servers.models.threads import Prethreaded, ThreadPerConnection, ThreadPool

    return {
        "single": Single,
        "thread-per-connection": ThreadPerConnection,
        "prethreaded": Prethreaded,
        "threadpool": ThreadPool,
        "fork-per-connection": ForkPerConnection,
        "preforked": Preforked,
        "preforked-reuseport": PreforkedReuseport,
    }


def _blocking_loop() -> type:
    from servers.loops.blocking import BlockingLoop

    return BlockingLoop


def _selector_loop() -> type:
    from servers.loops.selector_loop import SelectorLoop

    return SelectorLoop


def _one_shot_loop() -> type:
    from servers.loops.one_shot import OneShotLoop

    return OneShotLoop


def _asyncio_loop() -> type:
    from servers.loops.asyncio_loop import AsyncioLoop

    return AsyncioLoop


# The connection loops, each imported only by a server that runs it: asyncio's module brings asyncio and
# ssl, ~7 MB of a server's RSS that a blocking or selectors design must not carry into its memory figures.
LOOPS: dict[str, Callable[[], type]] = {
    "blocking": _blocking_loop,
    "selectors": _selector_loop,
    "asyncio": _asyncio_loop,
    "one-shot": _one_shot_loop,
}


class Design(NamedTuple):
    parts: str  # "MODEL+LOOP", or "module:Class" for a class written by hand
    description: str
    defaults: tuple[tuple[str, object], ...] = ()  # its own defaults of ServerConfig fields, run alone
    # What it answers: socklab's frames (servers.protocol), or "one-shot": it reads one message and closes,
    # never replying (the seed), so it is loaded by the one-shot user and left out of socklab's scenarios.
    protocol: str = "socklab"


# The registry: a design is a line here.  The CLI, the harness, `socklab compare`, the benchmarks and
# the test suites all iterate it.
DESIGNS: dict[str, Design] = {
    "blocking": Design("single+blocking", "one loop: accept() one client, serve it until it closes, then the next"),
    "threaded": Design(
        "thread-per-connection+blocking", "a thread per connection, each running the blocking request loop"
    ),
    "selectors": Design("single+selectors", "one thread, non-blocking sockets, epoll via selectors; SLEEP is a timer"),
    "asyncio": Design("single+asyncio", "one asyncio event loop, a Protocol per connection; SLEEP is loop.call_later"),
    "forking": Design(
        "fork-per-connection+blocking", "a process per connection: fork() after accept(), the child serves it and exits"
    ),
    "preforked": Design(
        "preforked+blocking", "N processes forked at start, each blocking in accept() on the one shared listener"
    ),
    "preforked-reuseport": Design(
        "preforked-reuseport+blocking",
        "N processes, each with its own SO_REUSEPORT listener on the port; one accept queue each",
    ),
    "prethreaded": Design(
        "prethreaded+blocking", "N threads started at start, each blocking in accept() on the shared listener"
    ),
    "threadpool": Design(
        "threadpool+blocking", "the main thread accepts; N worker threads take connections from a queue"
    ),
    "preforked-selectors": Design(
        "preforked+selectors",
        "nginx's model: N processes, each a selectors loop on the one shared listener "
        "(--epoll-exclusive: EPOLLEXCLUSIVE on it)",
    ),
    "preforked-reuseport-selectors": Design(
        "preforked-reuseport+selectors",
        "nginx with reuseport: N processes, each a selectors loop on its own SO_REUSEPORT listener",
    ),
    "seed": Design(
        "single+one-shot",
        "the lesson's own server: listen(10), then accept() → one recv(4096) → close(), no reply (port 6666 "
        "run alone; servers/c/seed.c is its twin in C)",
        (("port", 6666), ("backlog", 10)),
        "one-shot",
    ),
}
# Out of tree: SOCKLAB_DESIGNS="name=MODEL+LOOP,name=package.module:Class,..." (inherited by children).
# SOCKLAB_VARIANTS is its name from before "design" was the one word: read for one release, said once.
if "SOCKLAB_VARIANTS" in os.environ and "SOCKLAB_DESIGNS" not in os.environ:
    print("socklab: SOCKLAB_VARIANTS is deprecated; set SOCKLAB_DESIGNS instead", file=sys.stderr)
    os.environ["SOCKLAB_DESIGNS"] = os.environ.pop("SOCKLAB_VARIANTS")
for _entry in filter(None, os.environ.get("SOCKLAB_DESIGNS", "").split(",")):
    _name, _, _parts = _entry.partition("=")
    if _name.strip() and (":" in _parts or "+" in _parts):
        DESIGNS[_name.strip()] = Design(_parts.strip(), f"{_parts.strip()} (from SOCKLAB_DESIGNS)")


def speaking(protocol: str = "socklab") -> list[str]:
    """The registered designs that answer this protocol: socklab's frames by default (all but the seed)."""
    return [name for name, design in DESIGNS.items() if design.protocol == protocol]


def _load(target: str) -> type:
    """An out-of-tree design's class, from SOCKLAB_DESIGNS's "package.module:Class"."""
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)  # type: ignore[no-any-return]


def compose(name: str, parts: str, description: str = "") -> type[BaseServer]:
    """The server class of MODEL+LOOP: the model's mix-in over the loop's; ValueError says why not."""
    model_name, plus, loop_name = parts.partition("+")
    if not plus or model_name not in model_classes() or loop_name not in LOOPS:
        raise ValueError(
            f"{parts!r} is not MODEL+LOOP; models: {', '.join(model_classes())}; loops: {', '.join(LOOPS)}"
        )
    model, loop = model_classes()[model_name], LOOPS[loop_name]()
    if loop_name not in model.loops:
        raise ValueError(
            f"the {model_name} model runs with the {' or '.join(sorted(model.loops))} loop, not {loop_name}"
        )
    # The traits come with the parts (servers.base: BaseServer.__init_subclass__ derives the joint ones).
    return type(_class_name(name), (model, loop), {"design": name, "description": description or parts})


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-")) + "Server"


_classes: dict[str, type[BaseServer]] = {}


def design_class(name: str) -> type[BaseServer]:
    """The server class of a registered design; KeyError names the known ones."""
    if name in _classes:
        return _classes[name]
    try:
        design = DESIGNS[name]
    except KeyError:
        raise KeyError(f"unknown design {name!r}; choose one of: {', '.join(DESIGNS)}") from None
    if ":" in design.parts:
        cls: type[BaseServer] = _load(design.parts)
    else:
        cls = compose(name, design.parts, design.description)
    _classes[name] = cls
    return cls
