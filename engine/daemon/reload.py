"""Hot reload of policy files (PRODUCT.md §8: the daemon never runs with no policy).

On a change under a watched path: read every policy file of the account, parse and check them
with the standard library, compile, and run the policy's own fixtures (``riskc test`` files
beside it). Only when all of that passes is the new set handed to the account's loop, which
swaps it between two events and records the new content hashes. On any failure the last good set
stays active and the diagnostics are printed and alerted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from riskc.engine.daemon.items import Swap
from riskc.engine.runner import PolicySet

if TYPE_CHECKING:
    from riskc.engine.daemon.daemon import AccountLoop, Daemon

log = logging.getLogger("riskc.reload")


@dataclass(frozen=True, slots=True)
class Candidate:
    """The outcome of validating an edited policy set: ``policies`` when it may be swapped in,
    else the problems, already rendered for a terminal."""

    policies: PolicySet | None
    sources: tuple[tuple[str, str], ...]
    problems: tuple[str, ...]
    seconds: float


def validate(paths: list[Path], scope: str = "account") -> Candidate:
    """Parse → check → compile → fixtures, in that order; stops at the first stage that fails.
    Never raises: an internal error (a bug, a RecursionError, a MemoryError) rejects the edit
    like a diagnostic does, so the last good set stays and the next edit is read again."""
    started = time.perf_counter()
    try:
        return _validate(paths, started, scope)
    except Exception as error:
        log.exception("internal error while validating the policies")
        problem = f"internal error while checking the edited policies ({type(error).__name__}: {error})"
        return Candidate(None, (), (problem[:2000],), time.perf_counter() - started)


def _validate(paths: list[Path], started: float, scope: str = "account") -> Candidate:
    try:
        sources = tuple(_read(paths))
    except OSError as error:
        return Candidate(None, (), (f"cannot read the policies: {error}",), time.perf_counter() - started)
    except UnicodeDecodeError as error:
        return Candidate(None, (), (f"the policies are not UTF-8 text: {error}",), time.perf_counter() - started)
    policies, diagnostics, result = PolicySet.from_sources(list(sources), scope)
    if policies is None:
        problems = tuple(d.render(result.sources.get(d.span.file)) for d in diagnostics if d.is_error)
        return Candidate(None, sources, problems or ("no policy among the files",), time.perf_counter() - started)
    failures = run_fixtures(paths)
    if failures:
        return Candidate(None, sources, tuple(failures), time.perf_counter() - started)
    return Candidate(policies, sources, (), time.perf_counter() - started)


def _read(paths: list[Path]) -> list[tuple[str, str]]:
    return [(str(p), p.read_text(encoding="utf-8")) for p in _files(paths)]


def run_fixtures(paths: list[Path]) -> list[str]:
    """Run the policy's own fixtures: the files in a ``tests/`` folder beside the policy files
    whose ``policy_file`` is one of them. Failures come back as text; none means all passed."""
    from riskc.engine.testing.policy_tests import FixtureError, Runner, load_fixture, show_record

    policies = {p.resolve() for p in _files(paths)}
    runner, failures = Runner(), []
    for path in _fixture_files(policies):
        try:
            fixture = load_fixture(path)
        except FixtureError as error:
            failures.append(str(error))
            continue
        if Path(fixture.policy_path).resolve() not in policies:
            continue
        result = runner.run(fixture)
        failures += result.errors
        for case in result.cases:
            if case.status != "passed":
                detail = case.error or "; ".join(
                    [f"missing {show_record(e.fields)}" for e in case.missing]
                    + [f"unexpected {show_record(r)}" for r in case.unexpected]
                )
                failures.append(f"{path}: case {case.case.name!r} {case.status}: {detail}")
    return failures


def _fixture_files(policies: set[Path]) -> list[Path]:
    folders = {p.parent / "tests" for p in policies}
    return sorted(f for folder in folders if folder.is_dir() for f in folder.glob("*.y*ml"))


def _files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(p for p in path.rglob("*.risk") if p.is_file()) if path.is_dir() else [path])
    return list(dict.fromkeys(files))


async def watch_and_reload(daemon: Daemon) -> None:
    from watchfiles import awatch

    guards = daemon.guards()
    watched = _watched([*daemon.loops, *guards])
    if not watched:
        return
    async for changes in awatch(*watched, stop_event=daemon._stop, debounce=50, step=10, recursive=True):
        changed = {Path(path).resolve() for _, path in changes}
        for lp in daemon.loops:
            if _concerns(lp, changed):
                try:
                    await reload_loop(daemon, lp)
                except Exception as error:  # the watcher outlives any one reload: later edits still count
                    log.exception("policy reload failed")
                    daemon.alerts.alert(
                        "critical", f"policy reload failed, the last good policies stay active: {error}"
                    )
        for guard in guards:
            if _concerns(guard, changed):
                await reload_group(daemon, guard)


async def reload_group(daemon: Daemon, guard) -> Candidate:
    """A group policy edit: checked as an account's is (with `scope group`), then swapped in
    between two evaluations; under `edits: next_trading_day` staged as an account's edit is."""
    candidate = await asyncio.to_thread(validate, guard.paths, "group")
    if candidate.policies is None:
        text = f"group {guard.name}: policy edit rejected, the last good policies stay active:\n" + "\n".join(
            candidate.problems
        )
        daemon.alerts.alert("high", text)
        daemon.log_record({"kind": "reload", "group": guard.name, "outcome": "rejected"})
        return candidate
    now = max((m.book.now for m in guard.members if m.book.day is not None), default=None)
    if guard.commitment is not None:  # `edits: next_trading_day`: staged, not swapped (daemon/commitment.py)
        guard.commitment.stage(candidate.policies, candidate.sources, now)
        return candidate
    guard.swap(candidate.policies)
    for path, digest in candidate.policies.hashes:
        daemon.store.record_policy(path, digest, now or dt.datetime.now(dt.UTC))
    daemon.alerts.alert("info", f"group {guard.name}: policies reloaded ({candidate.policies.digest})")
    daemon.log_record(
        {"kind": "reload", "group": guard.name, "outcome": "swapped", "digest": candidate.policies.digest}
    )
    return candidate


async def reload_loop(daemon: Daemon, lp: AccountLoop) -> Candidate:
    candidate = await asyncio.to_thread(validate, lp.paths)
    account = lp.engine.book.account.id or None
    if candidate.policies is not None and candidate.policies.clock != lp.engine.policies.clock:
        zone, start = candidate.policies.clock
        candidate = dataclasses.replace(
            candidate,
            policies=None,
            problems=(
                *candidate.problems,
                f"the edit moves the trading clock to {zone}, day from {start:%H:%M}: the book keeps "
                f"its trading days, so restart riskc to apply it",
            ),
        )
    if candidate.policies is None:
        lp.activity.reload_errors += 1
        text = "policy edit rejected, the last good policies stay active:\n" + "\n".join(candidate.problems)
        lp.activity.last_error = text
        daemon.alerts.alert("high", text, account=account)
        daemon.log_record({"kind": "reload", "outcome": "rejected", "problems": list(candidate.problems)})
        return candidate
    lp.activity.last_error = None
    commitment = getattr(lp, "commitment", None)
    if commitment is not None:  # `edits: next_trading_day`: staged, not swapped (daemon/commitment.py)
        book = lp.engine.book
        commitment.stage(candidate.policies, candidate.sources, book.now if book.day is not None else None)
        return candidate
    await lp.queue.put(_swap(candidate))
    daemon.alerts.alert(
        "info", f"policies reloaded ({candidate.policies.digest}) in {candidate.seconds * 1000:.0f} ms", account=account
    )
    daemon.log_record(
        {
            "kind": "reload",
            "outcome": "swapped",
            "digest": candidate.policies.digest,
            "files": [p for p, _ in candidate.policies.hashes],
        }
    )
    return candidate


def _swap(candidate: Candidate) -> Swap:
    return Swap(candidate.policies, candidate.sources)


def _watched(loops) -> list[Path]:
    paths: set[Path] = set()
    for lp in loops:
        for path in lp.paths:
            paths.add(path.parent if path.is_file() else path)
    return sorted(paths)


def _concerns(lp: AccountLoop, changed: set[Path]) -> bool:
    roots = [p.resolve() for p in lp.paths]
    for path in changed:
        if path.suffix not in (".risk", ".yaml", ".yml"):
            continue
        for root in roots:
            if path == root or root in path.parents or path.parent == root.parent:
                return True
    return False
