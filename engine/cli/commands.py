"""CLI verbs. Each module defines one click command named ``command``; list it here."""

from __future__ import annotations

import importlib

import click

_VERBS = (
    "init_cmd",
    "check_cmd",
    "fmt_cmd",
    "eval_cmd",
    "audit_cmd",
    "replay_cmd",
    "diff_cmd",
    "status_cmd",
    "lock_cmd",
    "unlock_cmd",
    "admin_cmd",
    "reload_cmd",
    "test_cmd",
    "rules_cmd",
    "run_cmd",
    "record_cmd",
)


def register_all(group: click.Group) -> None:
    for name in _VERBS:
        group.add_command(importlib.import_module(f"{__package__}.{name}").command)
