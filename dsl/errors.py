"""Source spans and diagnostics: the one way the language reports a problem to a person.

A diagnostic renders as ``path:line:col: code: message``, then the source line, a caret line
under the span, and optional ``have:`` / ``want:`` / ``help:`` lines (PRODUCT.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# Stable codes. Tests, docs and `--format json` consumers rely on these strings.
PARSE_ERROR = "risk_parse_error"
UNKNOWN_NAME = "risk_unknown_name"
TYPE_ERROR = "risk_type_error"
UNIT_ERROR = "risk_unit_error"
ARITY_ERROR = "risk_arity_error"
DUPLICATE = "risk_duplicate"
BAD_SETTING = "risk_bad_setting"
BAD_ACTION = "risk_bad_action"
NEVER_FIRES = "risk_never_fires"
CONFLICTING_ACTIONS = "risk_conflicting_actions"
UNUSED_PARAM = "risk_unused_param"
TOO_DEEP = "risk_too_deep"
EMPTY_FILE = "risk_empty_file"
BAD_ARGUMENT = "risk_bad_argument"
SCOPE_ERROR = "risk_scope_error"  # an account rule in a group policy, or the reverse


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node sits in its source. Lines and columns are 1-based; ``end_col`` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def cover(self, other: Span) -> Span:
        """The smallest span that contains both."""
        start = min((self.line, self.col), (other.line, other.col))
        end = max((self.end_line, self.end_col), (other.end_line, other.end_col))
        return Span(self.file, start[0], start[1], end[0], end[1])

    def contains(self, other: Span) -> bool:
        return (self.line, self.col) <= (other.line, other.col) and (other.end_line, other.end_col) <= (
            self.end_line,
            self.end_col,
        )

    @property
    def sort_key(self) -> tuple[str, int, int]:
        return (self.file, self.line, self.col)


NO_SPAN = Span("<builtin>", 1, 1, 1, 1)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    span: Span
    severity: Severity = Severity.ERROR
    help: str | None = None
    have: str | None = None
    want: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.span.file,
            "line": self.span.line,
            "col": self.span.col,
            "end_line": self.span.end_line,
            "end_col": self.span.end_col,
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "help": self.help,
            "have": self.have,
            "want": self.want,
        }

    def render(self, source: str | None = None) -> str:
        """The human form: header line, source excerpt with a caret, then detail lines."""
        label = self.code if self.is_error else f"{self.code}: warning"
        lines = [f"{self.span}: {label}: {self.message}"]
        lines.extend(_excerpt(self.span, source))
        for key in ("have", "want", "help"):
            value = getattr(self, key)
            if value:
                lines.append(f"  {key}: {value}")
        return "\n".join(lines)


def _excerpt(span: Span, source: str | None) -> list[str]:
    if source is None:
        return []
    src_lines = source.splitlines()
    if not 1 <= span.line <= len(src_lines):
        return []
    text = src_lines[span.line - 1].expandtabs(1)
    width = max(1, span.end_col - span.col) if span.end_line == span.line else max(1, len(text) - span.col + 1)
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * len(gutter) + " " * (span.col - 1) + "^" * width]


@dataclass(slots=True)
class DiagnosticSink:
    """Collects diagnostics across passes and files; sorted by position when read."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, diagnostic: Diagnostic) -> None:
        self.items.append(diagnostic)

    def error(self, code: str, message: str, span: Span, **detail: str | None) -> None:
        self.items.append(Diagnostic(code, message, span, Severity.ERROR, **detail))

    def warning(self, code: str, message: str, span: Span, **detail: str | None) -> None:
        self.items.append(Diagnostic(code, message, span, Severity.WARNING, **detail))

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=lambda d: (d.span.sort_key, d.code, d.message))


class RiskError(Exception):
    """Raised by API entry points when the caller wants an exception rather than a list."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d.span) + ": " + d.message for d in diagnostics))
