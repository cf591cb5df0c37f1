"""socklab server variants: one wire protocol (servers.protocol), one file per concurrency model.

Run one with ``python -m servers VARIANT``; list them with ``python -m servers --list``.
Nothing in this package imports locust: a server under test must measure its own
concurrency model, not gevent's.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servers.base import BaseServer

# variant name -> "module:class"; modules are imported only when asked for.
VARIANTS: dict[str, str] = {
    "blocking": "servers.blocking:BlockingServer",
    "threaded": "servers.threaded:ThreadedServer",
    "selectors": "servers.selector_loop:SelectorServer",
}


def variant_class(name: str) -> type[BaseServer]:
    """The server class of a variant; KeyError names the known ones."""
    try:
        target = VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown variant {name!r}; choose one of: {', '.join(VARIANTS)}") from None
    module, _, cls = target.partition(":")
    return getattr(import_module(module), cls)
