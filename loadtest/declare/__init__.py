"""Declarations, each written once: options, columns, kinds, scenarios, experiments, the --mix and
tcp://HOST:PORT syntaxes.  Everything else reads these; this layer imports nothing above it."""
