"""socklab server variants: one wire protocol (servers.protocol), one file per concurrency model.

Run one with ``python -m servers VARIANT``; list them with ``python -m servers --list``.
Nothing in this package imports locust: a server under test must measure its own
concurrency model, not gevent's.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servers.base import BaseServer

# variant name -> "module:class"; modules are imported only when asked for.  Adding a variant is
# a line here and a file: the CLI, the harness, `socklab compare`, the benchmarks and the test
# suites all iterate this registry.
VARIANTS: dict[str, str] = {
    "blocking": "servers.blocking:BlockingServer",
    "threaded": "servers.threaded:ThreadedServer",
    "selectors": "servers.selector_loop:SelectorServer",
    "asyncio": "servers.asyncio_loop:AsyncioServer",
    "forking": "servers.forking:ForkingServer",
    "preforked": "servers.preforked:PreforkedServer",
    "preforked-reuseport": "servers.preforked_reuseport:PreforkedReuseportServer",
    "prethreaded": "servers.prethreaded:PrethreadedServer",
    "threadpool": "servers.threadpool:ThreadPoolServer",
}
# Out-of-tree variants: SOCKLAB_VARIANTS="name=package.module:Class,..." (inherited by child processes).
for _entry in filter(None, os.environ.get("SOCKLAB_VARIANTS", "").split(",")):
    _name, _, _target = _entry.partition("=")
    if _name.strip() and ":" in _target:
        VARIANTS[_name.strip()] = _target.strip()


def variant_class(name: str) -> type[BaseServer]:
    """The server class of a variant; KeyError names the known ones."""
    try:
        target = VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown variant {name!r}; choose one of: {', '.join(VARIANTS)}") from None
    module, _, cls = target.partition(":")
    return getattr(import_module(module), cls)
