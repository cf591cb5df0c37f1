"""The report's rules: what the figures are and mean (summary, account, timeline, findings, answer,
self-checks, the lab's claims), computed from a run's files.  No rendering here."""
