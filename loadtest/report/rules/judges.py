"""Every scenario's and experiment's check, looked up by its declaration: ``check_of(UNP30)``.

A check registers itself on what it judges when its rules module is imported (``@UNP30.check``; an
experiment's through claims' ``@check(BACKLOG)``): the declarations (loadtest.declare) never name their
checks, so each link runs one way, rules → declare, where the import-circle test sees it.  This module
imports every rules module that registers one, so whoever asks here finds them all."""

from __future__ import annotations

from loadtest.declare.scenarios import CHECKS, CheckFunction, Workload
from loadtest.report.rules import claims, nginx_accept, stevens, time_wait, workers

JUDGES = (
    claims,
    nginx_accept,
    stevens,
    time_wait,
    workers,
)  # the rules modules with checks, imported for what they register


def check_of(declared: Workload) -> CheckFunction | None:
    """The check registered on this scenario or experiment, or None when it has none."""
    return CHECKS.get(declared)
