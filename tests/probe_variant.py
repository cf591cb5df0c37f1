"""A variant that lives outside servers/: registered only through SOCKLAB_VARIANTS, listed nowhere else.

tests/test_registry.py uses it to prove that the suites cover whatever the registry holds.
"""

from __future__ import annotations

from servers.threaded import ThreadedServer


class ProbeServer(ThreadedServer):
    variant = "probe"
    description = "a registry probe: the threaded design under another name"
