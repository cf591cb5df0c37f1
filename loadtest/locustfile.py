"""socklab's locustfile: ``locust -f loadtest/locustfile.py [USER CLASS]``: PersistentUser, ConnectPerRequestUser,
IdleUser or OneShotUser.

With no options it starts a `selectors` server on a free port as its own process,
targets it, and stops it at the end.  docs/locust.md lists every option.
"""

from loadtest.glue import plugin  # noqa: F401  (registers socklab's options and event handlers)
from loadtest.glue.users import ConnectPerRequestUser, IdleUser, OneShotUser, PersistentUser

__all__ = ["ConnectPerRequestUser", "IdleUser", "OneShotUser", "PersistentUser"]
