"""The console people read: one way to make it, for the daemon and the CLI verbs."""

from __future__ import annotations


def make_console(*, stderr: bool = False):
    """A rich Console for people: no highlighting of numbers, and soft wrap (never a hard line
    break inside an expression or a path) when the output is not a terminal, where a reader or a
    program, not an 80-column screen, decides the width."""
    from rich.console import Console

    console = Console(highlight=False, stderr=stderr)
    console.soft_wrap = not console.is_terminal
    return console
