"""A design that lives outside servers/: registered only through SOCKLAB_DESIGNS, listed nowhere else.

tests/test_registry.py uses it to prove that the suites cover whatever the registry holds.  It is a
class written by hand over the parts (the ``module:Class`` form of an entry); the other probe of that
test is a composition alone (``MODEL+LOOP``).
"""

from __future__ import annotations

from servers.loops.blocking import BlockingLoop
from servers.models.threads import ThreadPerConnection


class ProbeServer(ThreadPerConnection, BlockingLoop):
    design = "probe"
    description = "a registry probe: the threaded design under another name"
    stevens = "serv06"
