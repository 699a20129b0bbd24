"""`riskc test PATH...`: run policy tests (PRODUCT.md §5; the format is in docs/testing.md).

Output reads like pytest's: a line of dots per file, then each failing case with the expected
actions it did not get, the actions it got and did not expect (with their reasons), and a
summary. Exit 0 when every case passes, 1 when one fails or a fixture cannot be run, 2 on usage.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import click

from riskc.engine.cli.common import EXIT_FAILED, EXIT_OK

_MARK = {"passed": ".", "failed": "F", "error": "E"}


@click.command("test")
@click.argument("paths", nargs=-1)
@click.option("--stdlib", is_flag=True, help="Also run the standard library's own tests (shipped with riskc).")
@click.option("--coverage", is_flag=True, help="Report which rules and which `when` clauses the cases exercised.")
def command(paths: tuple[str, ...], stdlib: bool, coverage: bool) -> None:
    """Run policy tests: YAML fixture files, or directories searched for them under `tests/`."""
    from riskc.engine.testing.policy_tests import Coverage, Runner

    files = collect_fixture_files(paths, stdlib)
    started = time.perf_counter()
    runner = Runner(Coverage() if coverage else None)
    results = []
    for path in files:
        result = runner.run_path(path)
        click.echo(f"{result.path} {''.join(_MARK[c.status] for c in result.cases)}{'E' * bool(result.errors)}")
        results.append(result)
    _print_problems(results)
    click.echo(_summary(results, time.perf_counter() - started))
    if runner.coverage is not None:
        _print_coverage(runner.coverage)
    raise SystemExit(EXIT_OK if all(r.ok for r in results) else EXIT_FAILED)


def collect_fixture_files(paths: Iterable[str], stdlib: bool = False) -> list[Path]:
    """Files given by name, and the *.yaml/*.yml files inside a `tests` folder of a directory."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(_fixtures_under(path))
        elif path.is_file():
            found.append(path)
        else:
            raise click.UsageError(f"no such file or directory: {raw}")
    if stdlib:
        from riskc.dsl.library import stdlib_dir

        found.extend(_fixtures_under(stdlib_dir()))
    if not found:
        where = ", ".join(paths) if paths else "nothing: give PATH... or --stdlib"
        raise click.UsageError(f"no policy tests (YAML files in a `tests` folder) found in {where}")
    return list(dict.fromkeys(found))


def _fixtures_under(root: Path) -> list[Path]:
    files = [p for pattern in ("*.yaml", "*.yml") for p in root.rglob(pattern) if p.is_file()]
    return sorted(p for p in files if root.name == "tests" or "tests" in p.relative_to(root).parts[:-1])


def _print_problems(results) -> None:
    for result in results:
        for error in result.errors:
            click.echo(f"\nERROR {error}")
        for case in result.cases:
            if case.status == "error":
                click.echo(f"\nERROR {case.error}")
            elif case.status == "failed":
                click.echo("\n" + describe_failure(result.path, case))


def describe_failure(path: str, case) -> str:
    """The failing case's line, then the diff: `-` expected and not planned, `+` planned and not
    expected (with the reason the policy gave), and what matched."""
    from riskc.engine.testing.policy_tests import show_record

    keys = _KEYS if case.case.events is None else ("ts", *_KEYS)
    lines = [f"FAILED {path}:{case.case.line} {case.case.name}"]
    lines += [f"  - {expected.show()}    (expected, not planned)" for expected in case.missing]
    for record in case.unexpected:
        lines.append(f"  + {show_record(record, keys)}    (planned, not expected)")
        lines.append(f"      because {record['reason']}")
    matched = [r for r in case.actual if r not in case.unexpected]
    lines += [f"    {show_record(r, keys)}    (as expected)" for r in matched]
    if not case.actual:
        lines.append("    (the policy planned no action)")
    return "\n".join(lines)


_KEYS = ("rule", "action", "symbol", "contract_id", "order_id", "to", "until", "condition", "price", "message")


def _summary(results, seconds: float) -> str:
    counts = {"failed": 0, "passed": 0, "error": 0}
    for result in results:
        counts["error"] += len(result.errors)
        for case in result.cases:
            counts[case.status] += 1
    parts = [
        f"{counts[k]} {'errors' if k == 'error' and counts[k] != 1 else k}"
        for k in ("failed", "passed", "error")
        if counts[k]
    ]
    return f"\n{', '.join(parts) or 'no cases'} in {seconds:.2f}s"


def _print_coverage(coverage) -> None:
    entries = coverage.entries()
    clauses = sum(len(e.clauses) for e in entries)
    both = sum(e.clause_covered(i) for e in entries for i in range(len(e.clauses)))
    click.echo(
        f"\ncoverage: {sum(e.exercised for e in entries)}/{len(entries)} rules evaluated, "
        f"{sum(e.fired > 0 for e in entries)}/{len(entries)} fired; "
        f"{both}/{clauses} `when` clauses seen both true and false"
    )
    for entry in entries:
        click.echo(
            f"  {entry.rule} ({_short(entry.file)}): when evaluated {entry.evaluated}x, fired {entry.fired}x"
            + ("" if entry.exercised else "  <- never evaluated")
        )
        for i, text in enumerate(entry.clauses):
            gap = "" if entry.clause_covered(i) else "  <- never " + ("true" if not entry.true[i] else "false")
            raised = f", raised {entry.raised[i]}" if entry.raised[i] else ""
            click.echo(f"      true {entry.true[i]}, false {entry.false[i]}{raised}: {text}{gap}")


def _short(file: str) -> str:
    """`stdlib_rules/pnl.risk` rather than the install path."""
    path = Path(file)
    return f"{path.parent.name}/{path.name}" if path.is_absolute() else file
