"""Connection loops: how one thread waits for bytes.  One module per kernel mechanism, as in
CPython's ``selectors``: blocking recv/send (``blocking``), readiness with epoll through
``selectors`` (``selector_loop``), and asyncio's transports (``asyncio_loop``).  The event loops
share their protocol rules through ``servers.session``."""
