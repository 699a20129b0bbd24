"""Policy tests (`riskc test`): fixture files of cases, each a snapshot of an account (or a timed
sequence of Gateway messages, see ``engine.fixture_events``) and the actions the policy must take.
The format is described in docs/testing.md:

```yaml
policy: |                            # the policy under test, inline ...
  use daily_loss(limit: $1,000)
# policy_file: ../topstep-50k.risk   # ... or a file, relative to this one
base:                                # optional: the snapshot every case starts from
  now: 2026-03-10T20:08:00Z
cases:
  - name: exactly at the limit breaches
    snapshot: {day: {realized_pnl: -1000}}     # merged over `base`
    expect:                                    # every planned action, no more; [] for none
      - {rule: daily_loss, action: flatten}
      - {rule: daily_loss, action: lockout, until: 2026-03-10T22:00:00Z}
```

An expected action matches an action record (PRODUCT.md §6.2) that has the same value for every
key it gives (`reason` and `message`: the text appears in the record's); expected and planned
actions must pair up one to one (`trading_state` records count only in a case that expects one).
A mistake in a fixture is a ``FixtureError`` with its line: the
file (or only the case, when the mistake is inside one) is reported and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from riskc.dsl.compiler import Program, when_clauses
from riskc.dsl.decision import Decision
from riskc.dsl.format import format_expr
from riskc.engine.adapters.projectx.intake import Message
from riskc.engine.core.instruments import DEFAULT_INSTRUMENTS
from riskc.engine.testing.snapshot_file import SnapshotIn, build_snapshot, line_of, validation_message

RECORD_KEYS = (
    "ts",
    "rule",
    "action",
    "symbol",
    "contract_id",
    "order_id",
    "to",
    "until",
    "condition",
    "state",
    "price",
    "message",
    "reason",
)
_INSTANTS, _INTS, _TEXTS = ("ts", "until"), ("to", "order_id"), ("reason", "message")


class FixtureError(Exception):
    """A fixture that cannot be run, with where (file and line) and why."""

    def __init__(self, path: str, line: int | None, message: str):
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path, self.line, self.message = path, line, message


# ---- the file format -----------------------------------------------------------------------------


class _FileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: str | None = None
    policy_file: str | None = None
    base: dict | None = None
    cases: list[dict]


class _CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    snapshot: dict | None = None
    events: list | None = None
    until: Any = None
    expect: list[dict]


@dataclass(frozen=True, slots=True)
class Expected:
    """One expected action: the record keys it gives, with values normalised for comparison."""

    fields: Mapping[str, Any]
    line: int | None

    def matches(self, record: Mapping[str, Any]) -> bool:
        return all(key in record and _same(key, want, record[key]) for key, want in self.fields.items())

    def show(self) -> str:
        return show_record(self.fields)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    line: int | None
    snapshot: dict | None  # `base` with the case's own snapshot merged over it; None for events
    expect: tuple[Expected, ...]
    node: Any  # the case as read, for the lines of its mistakes
    base: Any
    events: tuple[Message, ...] | None = None
    until: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Fixture:
    path: str
    policy_path: str
    policy_source: str
    cases: tuple[Case, ...]
    case_errors: tuple[FixtureError, ...] = ()  # cases that could not be read; the others still run


def load_fixture(path: Path) -> Fixture:
    """Read and validate one fixture file; raises FixtureError for a file that cannot run at all."""
    shown = str(path)
    text = _read(path)
    data = _yaml(text, shown)
    try:
        model = _FileIn.model_validate(data)
    except ValidationError as error:
        raise _validation_error(error, data, shown) from None
    policy_path, policy_source = _policy(model, data, text, path)
    cases, errors = [], []
    for index, node in enumerate(model.cases):
        try:
            cases.append(_case(node, data["cases"], index, data.get("base"), shown))
        except FixtureError as error:
            errors.append(error)
    _check_unique_names(cases, shown)
    return Fixture(shown, policy_path, policy_source, tuple(cases), tuple(errors))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FixtureError(str(path), None, f"cannot read: {error}") from None


def _yaml(text: str, shown: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="rt").load(text)  # round-trip mode keeps line numbers
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise FixtureError(
            shown, mark.line + 1 if mark else None, f"not valid YAML: {getattr(error, 'problem', error)}"
        ) from None
    if not isinstance(data, dict):
        raise FixtureError(shown, 1, "a policy test file is a mapping with `policy` (or `policy_file`) and `cases`")
    return data


def _validation_error(
    error: ValidationError, data: Any, shown: str, prefix: tuple = (), model: type | None = None
) -> FixtureError:
    loc, message = validation_message(error, model or _FileIn)
    where = ".".join(str(p) for p in (*prefix, *loc))
    return FixtureError(shown, line_of(data, loc), f"{where}: {message}")


def _policy(model: _FileIn, data: Any, text: str, path: Path) -> tuple[str, str]:
    """(path, source) of the policy under test. An inline policy keeps its place in the YAML
    file, so a check error points at the fixture's own line and column."""
    if (model.policy is None) == (model.policy_file is None):
        raise FixtureError(str(path), 1, "give the policy under test: `policy` (inline) or `policy_file`, not both")
    if model.policy is not None:
        return str(path), _in_place(model.policy, data, text)
    target = Path(os.path.normpath(path.parent / model.policy_file))
    try:
        return str(target), target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FixtureError(
            str(path), line_of(data, ("policy_file",)), f"cannot read policy_file {target}: {error}"
        ) from None


def _in_place(source: str, data: Any, text: str) -> str:
    line, column = data.lc.value("policy")
    lines = text.splitlines()
    indicator = lines[line][column : column + 1] if line < len(lines) else ""
    if indicator in ("|", ">"):  # a block scalar: its lines start on the next line, indented
        body = next((text for text in lines[line + 1 :] if text.strip()), "")
        indent = " " * (len(body) - len(body.lstrip()))
        return "\n" * (line + 1) + "\n".join(indent + text if text else text for text in source.split("\n"))
    if indicator in ("'", '"'):
        column += 1
    return "\n" * line + " " * column + source


def _case(node: Any, cases: Any, index: int, base: Any, shown: str) -> Case:
    line = line_of(cases, (index,))
    if not isinstance(node, dict):
        raise FixtureError(shown, line, f"cases.{index}: a case is a mapping with `name`, `snapshot` and `expect`")
    try:
        model = _CaseIn.model_validate(node)
    except ValidationError as error:
        raise _validation_error(error, node, shown, ("cases", index), _CaseIn) from None
    expect = tuple(_expected(item, node["expect"], i, shown, model.name) for i, item in enumerate(model.expect))
    if model.events is None:
        if model.until is not None:
            raise FixtureError(shown, line_of(node, ("until",)), f"case {model.name!r}: `until` needs `events`")
        return Case(model.name, line, _merge(base or {}, model.snapshot or {}), expect, node, base)
    if model.snapshot is not None:
        raise FixtureError(
            shown,
            line_of(node, ("snapshot",)),
            f"case {model.name!r}: give `snapshot` or `events`, not both (the events build the account from nothing)",
        )
    events, until = _events(node, model, shown)
    return Case(model.name, line, None, expect, node, base, events, until)


def _events(node: Any, model: _CaseIn, shown: str) -> tuple[tuple[Message, ...], dt.datetime | None]:
    from riskc.engine.testing.fixture_events import EventError, read_events, resolve_time

    try:
        events = tuple(read_events(node["events"]))
    except EventError as error:
        raise FixtureError(shown, error.line, f"case {model.name!r}: {error}") from None
    if not events:
        raise FixtureError(shown, line_of(node, ("events",)), f"case {model.name!r}: `events` is empty")
    try:
        until = resolve_time(model.until, events[-1].ts, "until") if model.until is not None else None
    except ValueError as error:
        raise FixtureError(shown, line_of(node, ("until",)), f"case {model.name!r}: {error}") from None
    if until is not None and until < events[-1].ts:
        raise FixtureError(shown, line_of(node, ("until",)), f"case {model.name!r}: `until` is before the last event")
    return events, until


def _check_unique_names(cases: list[Case], shown: str) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            raise FixtureError(shown, case.line, f"two cases are named {case.name!r}")
        seen.add(case.name)


def _merge(base: Mapping, over: Mapping) -> dict:
    """`over` on top of `base`: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _expected(item: Any, items: Any, index: int, shown: str, case: str) -> Expected:
    line = line_of(items, (index,))
    if not isinstance(item, dict) or not item:
        raise FixtureError(
            shown, line, f"case {case!r}: an expected action is a mapping such as {{rule: daily_loss, action: flatten}}"
        )
    fields = {}
    for key, value in item.items():
        if key not in RECORD_KEYS:
            hint = f"; keys are {', '.join(RECORD_KEYS)}"
            raise FixtureError(
                shown, line_of(item, (key,)) or line, f"case {case!r}: unknown key `{key}` in an expected action{hint}"
            )
        try:
            fields[key] = _normalise(key, value)
        except (ValueError, TypeError, InvalidOperation) as error:
            raise FixtureError(shown, line_of(item, (key,)) or line, f"case {case!r}: `{key}`: {error}") from None
    return Expected(fields, line)


def _normalise(key: str, value: Any) -> Any:
    if key in _INSTANTS:
        return _instant(value)
    if key == "price":
        return Decimal(repr(value) if isinstance(value, float) else str(value))
    if key in _INTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not a whole number")
        return value
    return str(value)


def _instant(value: Any) -> dt.datetime:
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"{value} needs a timezone, e.g. 2026-03-10T22:00:00Z")
    return moment.astimezone(dt.UTC)


def _same(key: str, want: Any, have: Any) -> bool:
    if have is None:
        return False
    if key in _INSTANTS:
        return want == _instant(have)
    if key == "price":
        return want == Decimal(str(have))
    if key in _TEXTS:
        return want in str(have)
    return want == have if key in _INTS else want == str(have)


def show_record(record: Mapping[str, Any], keys: Iterable[str] = RECORD_KEYS) -> str:
    """`{rule: daily_loss, action: lockout, until: 2026-03-10T22:00:00+00:00}` (reason left out)."""
    parts = [f"{key}: {_shown(record[key])}" for key in keys if key in record and key != "reason"]
    return "{" + ", ".join(parts) + "}"


def _shown(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


# ---- running -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    status: str  # passed | failed | error
    missing: tuple[Expected, ...] = ()
    unexpected: tuple[dict, ...] = ()
    actual: tuple[dict, ...] = ()
    error: str | None = None


@dataclass(slots=True)
class FileResult:
    path: str
    cases: list[CaseResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the file, or a case, could not be run

    @property
    def ok(self) -> bool:
        return not self.errors and all(c.status == "passed" for c in self.cases)


class Runner:
    """Runs fixture files; calendars are shared between them (building one is not free)."""

    def __init__(self, coverage: Coverage | None = None):
        self.coverage = coverage
        self._calendars: dict[tuple[str, dt.time], Any] = {}

    def run_path(self, path: Path) -> FileResult:
        try:
            fixture = load_fixture(path)
        except FixtureError as error:
            return FileResult(str(path), errors=[str(error)])
        return self.run(fixture)

    def run(self, fixture: Fixture) -> FileResult:
        result = FileResult(fixture.path, errors=[str(e) for e in fixture.case_errors])
        program, problem = _compile(fixture)
        if program is None:
            result.errors.append(problem)
            return result
        if self.coverage is not None:
            self.coverage.add_program(program)
        result.cases = [self._run_case(program, fixture, case) for case in fixture.cases]
        return result

    def _run_case(self, program: Program, fixture: Fixture, case: Case) -> CaseResult:
        try:
            records = (
                self._events(program, fixture, case)
                if case.events is not None
                else self._evaluate(program, fixture, case)
            )
        except FixtureError as error:
            return CaseResult(case, "error", error=str(error))
        missing, unexpected = pair_up(case.expect, _compared(case.expect, records))
        status = "passed" if not missing and not unexpected else "failed"
        return CaseResult(case, status, missing, unexpected, records)

    def _evaluate(self, program: Program, fixture: Fixture, case: Case) -> tuple[dict, ...]:
        snapshot = self._snapshot(program, fixture, case)
        decision = program.evaluate(snapshot)
        if self.coverage is not None:
            self.coverage.record(program, snapshot, decision)
        return tuple(decision.records(snapshot.event.time or snapshot.session.now))

    def _events(self, program: Program, fixture: Fixture, case: Case) -> tuple[dict, ...]:
        from riskc.engine.testing.fixture_events import run_events

        observed = _Observed(program, self.coverage) if self.coverage is not None else program
        return tuple(run_events(observed, fixture.policy_path, fixture.policy_source, list(case.events), case.until))

    def _snapshot(self, program: Program, fixture: Fixture, case: Case):
        try:
            model = SnapshotIn.model_validate(case.snapshot)
        except ValidationError as error:
            raise self._snapshot_error(error, fixture, case) from None
        settings = program.policy.settings
        calendar = self._calendar(settings.timezone, settings.trading_day_starts)
        return build_snapshot(model, settings.timezone, settings.trading_day_starts, DEFAULT_INSTRUMENTS, calendar)

    def _snapshot_error(self, error: ValidationError, fixture: Fixture, case: Case) -> FixtureError:
        first = error.errors()[0]
        loc = tuple(first["loc"])
        own = case.node.get("snapshot")
        line = None
        if isinstance(own, Mapping) and loc and loc[0] in own:
            line = line_of(own, loc)
        elif isinstance(case.base, Mapping) and loc and loc[0] in case.base:
            line = line_of(case.base, loc)
        where = ".".join(str(p) for p in loc) or "snapshot"
        _, message = validation_message(error, SnapshotIn)
        return FixtureError(fixture.path, line or case.line, f"case {case.name!r}: snapshot {where}: {message}")

    def _calendar(self, timezone: str, day_starts: dt.time):
        key = (timezone, day_starts)
        if key not in self._calendars:
            from riskc.engine.core.calendar import TradingCalendar

            self._calendars[key] = TradingCalendar(timezone, day_starts)
        return self._calendars[key]


class _Observed:
    """A program whose every evaluation inside the engine is also recorded for coverage."""

    def __init__(self, program: Program, coverage: Coverage):
        self._program, self._coverage = program, coverage

    def evaluate(self, snapshot) -> Decision:
        decision = self._program.evaluate(snapshot)
        self._coverage.record(self._program, snapshot, decision)
        return decision

    def __getattr__(self, name: str) -> Any:
        return getattr(self._program, name)


def _compile(fixture: Fixture) -> tuple[Program | None, str]:
    from riskc.engine.core.policy_loader import load_sources

    loaded = load_sources([(fixture.policy_path, fixture.policy_source)])
    if not loaded.ok:
        sources = loaded.result.sources
        rendered = [d.render(sources.get(d.span.file)) for d in loaded.diagnostics if d.is_error]
        return None, f"{fixture.path}: the policy under test does not check:\n" + "\n".join(rendered)
    if len(loaded.programs) != 1:
        return None, f"{fixture.path}: the policy under test defines rules but switches none on (add `use` lines)"
    if loaded.programs[0].policy.settings.scope == "group":
        return None, (
            f"{fixture.path}: the policy under test is a group policy (`scope group`); policy tests give one "
            "account's snapshot or events: test a group with `riskc replay RECORDING --config riskc.yaml`"
        )
    return loaded.programs[0], ""


def _compared(expected: tuple[Expected, ...], records: tuple[dict, ...]) -> tuple[dict, ...]:
    """The records a case's expectations are held to: a `trading_state` record (the state a
    lockout puts the account in) only when the case expects one, since it follows from the
    lockouts the case already names."""
    if any(e.fields.get("action") == "trading_state" for e in expected):
        return records
    return tuple(r for r in records if r.get("action") != "trading_state")


def pair_up(expected: tuple[Expected, ...], records: tuple[dict, ...]) -> tuple[tuple[Expected, ...], tuple[dict, ...]]:
    """Pair each expected action with a distinct record it matches (a maximum matching, so the
    order of the expectations never matters); returns what is left on each side."""
    owner: dict[int, int] = {}  # record index -> expected index

    def place(e: int, seen: set[int]) -> bool:
        for r, record in enumerate(records):
            if r in seen or not expected[e].matches(record):
                continue
            seen.add(r)
            if r not in owner or place(owner[r], seen):
                owner[r] = e
                return True
        return False

    for e in range(len(expected)):
        place(e, set())
    placed = set(owner.values())
    missing = tuple(x for i, x in enumerate(expected) if i not in placed)
    unexpected = tuple(r for i, r in enumerate(records) if i not in owner)
    return missing, unexpected


# ---- coverage ------------------------------------------------------------------------------------


@dataclass(slots=True)
class RuleCoverage:
    """What the cases did with one rule definition, over every instance of it."""

    rule: str
    file: str
    clauses: tuple[str, ...]
    evaluated: int = 0  # times its `when` was evaluated
    fired: int = 0
    true: list[int] = field(default_factory=list)
    false: list[int] = field(default_factory=list)
    raised: list[int] = field(default_factory=list)

    @property
    def exercised(self) -> bool:
        return self.evaluated > 0

    def clause_covered(self, i: int) -> bool:
        return self.true[i] > 0 and self.false[i] > 0


class Coverage:
    """Which rules the cases reached and which clauses of their `when` came out true and false."""

    def __init__(self) -> None:
        self.rules: dict[tuple[str, str], RuleCoverage] = {}

    def add_program(self, program: Program) -> None:
        for instance in program.rules:
            self._entry(instance.rule)

    def record(self, program: Program, snapshot, decision: Decision) -> None:
        fired = {f.rule for f in decision.fired}
        for trace in program.trace(snapshot):
            instance = program.rules[trace.index]
            entry = self._entry(instance.rule)
            entry.evaluated += len(trace.outcomes)
            entry.fired += instance.id in fired
            for outcome in trace.outcomes:
                for i, value in enumerate(outcome):
                    (entry.true if value else entry.raised if value is None else entry.false)[i] += 1

    def _entry(self, rule) -> RuleCoverage:
        key = (rule.span.file, rule.id)
        if key not in self.rules:
            clauses = tuple(format_expr(c) for c in when_clauses(rule.when))
            zeros = [0] * len(clauses)
            self.rules[key] = RuleCoverage(
                rule.id, rule.span.file, clauses, true=list(zeros), false=list(zeros), raised=list(zeros)
            )
        return self.rules[key]

    def entries(self) -> list[RuleCoverage]:
        return sorted(self.rules.values(), key=lambda r: (r.file, r.rule))
