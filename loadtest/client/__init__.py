"""The raw-socket client and what it records: connections, per-user ledgers, µs histograms, failure
classes, deadlines.  No locust import: the Locust users own a client, as fasthttp's do."""
