"""Process models: who runs connection loops, and where an accepted connection is served.

One process and one thread (``single``); a thread per connection, N threads started in advance,
or a pool of threads fed by the accepting thread (``threads``); a process per connection, or N
processes forked in advance on the shared listener or each on a SO_REUSEPORT listener of its own
(``forks``).  Each model says which connection loops it composes with (``loops``): handing a
connection to a thread or a child needs the blocking loop; running N event loops needs processes.
"""
