"""Turns Lark's "unexpected token" into a sentence a trader can act on.

Expected tokens are named in words (``a duration like 30s``, not ``DURATION``), and the mistakes
people actually make (a missing ``then``, ``1000$``, ``=`` for ``==``, an unclosed string) get a
message of their own.
"""

from __future__ import annotations

import re
from copy import copy

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

WORDS = {
    "MONEY": "an amount like $1,000",
    "DURATION": "a duration like 30s",
    "CLOCK": "a time of day like 15:08",
    "DATE": "a date like 2026-03-10",
    "PERCENT": "a percentage like 2%",
    "DECIMAL": "a number like 1.5",
    "INT": "a whole number",
    "STRING": "a string in double quotes",
    "SYMBOL": "a symbol like MNQ",
    "NAME": "a name",
    "COMPARE": "a comparison such as == or <",
    "ADD_OP": "`+` or `-`",
    "MUL_OP": "`*` or `/`",
    "BINDER_KIND": "`position` or `order`",
    "$END": "the end of the file",
}

_ACTION_KEYWORDS = frozenset(
    {
        "FLATTEN",
        "CLOSE",
        "REDUCE",
        "REDUCE_TOTAL",
        "CANCEL_ORDERS",
        "CANCEL",
        "LOCKOUT",
        "BLOCK",
        "MOVE_STOP",
        "PLACE_STOP",
        "PLACE_TARGET",
        "ALERT",
    }
)

# When a group's trigger terminals are all expected, its word replaces every terminal it absorbs.
_EXPRESSION_START = frozenset(
    {
        "MONEY",
        "INT",
        "DECIMAL",
        "DURATION",
        "CLOCK",
        "NAME",
        "STRING",
        "SYMBOL",
        "DATE",
        "PERCENT",
        "LPAR",
        "LSQB",
        "LBRACE",
        "MINUS",
        "NOT",
        "TRUE",
        "FALSE",
        "NONE",
    }
)
_GROUPS = (
    (frozenset({"MONEY", "INT", "NAME", "STRING"}), _EXPRESSION_START, "an expression"),
    (
        frozenset({"COMPARE", "ADD_OP", "MUL_OP"}),
        frozenset({"COMPARE", "ADD_OP", "MUL_OP", "DOT", "IN", "IF"}),
        "an operator",
    ),
    (frozenset(_ACTION_KEYWORDS), frozenset(_ACTION_KEYWORDS), "an action (flatten, close, lockout, alert, ...)"),
)
RESERVED = frozenset(
    {
        "policy",
        "use",
        "as",
        "rule",
        "on",
        "for",
        "when",
        "then",
        "severity",
        "and",
        "or",
        "not",
        "in",
        "true",
        "false",
        "none",
        "to",
        "until",
        "while",
        "at",
        "manual",
        "flatten",
        "close",
        "reduce",
        "reduce_total",
        "counting",
        "cancel_orders",
        "cancel",
        "lockout",
        "block",
        "move_stop",
        "place_stop",
        "place_target",
        "alert",
        "if",
        "else",
        "where",
    }
)
_ITEM_KEYWORDS = {"POLICY", "RULE", "USE", "$END"}


def describe_unexpected(error: UnexpectedInput, source: str, parser: Lark) -> tuple[str, str | None]:
    """(message, help) for a syntax error."""
    if isinstance(error, UnexpectedCharacters):
        return _unexpected_character(error, source, parser)
    assert isinstance(error, UnexpectedToken)
    return _twelve_hour_clock(error, source) or _unexpected_token(error, parser)


def _twelve_hour_clock(error: UnexpectedToken, source: str) -> tuple[str, str] | None:
    """`8:30am`: clock times are 24-hour, with no am/pm."""
    suffix = str(error.token).lower()
    start = getattr(error.token, "start_pos", None)
    if suffix not in ("am", "pm") or start is None:
        return None
    clock = re.search(r"(\d{1,2}):(\d\d)\s*$", source[:start])
    if clock is None:
        return None
    hour, minute = int(clock.group(1)) % 12, clock.group(2)
    hour += 12 if suffix == "pm" else 0
    return (
        f"clock times are 24-hour, without `{error.token}`",
        f"write {hour:02d}:{minute} for {clock.group(1)}:{minute}{suffix}",
    )


def _unexpected_character(error: UnexpectedCharacters, source: str, parser: Lark) -> tuple[str, str | None]:
    pos = error.pos_in_stream
    char = source[pos] if pos < len(source) else ""
    before = source[:pos].rstrip(" ")
    rest_of_line = source[pos + 1 :].split("\n", 1)[0]
    if char == "$" and before[-1:].isdigit():
        digits = before.split()[-1] if before.split() else before
        return (
            "the dollar sign goes before the amount",
            f"write ${digits.lstrip('-')} instead of {digits}$",
        )
    if char == "$":
        return ("malformed amount of money", "write money like $1,000 or -$12.50 (at most 2 decimals)")
    if char == '"' and '"' not in rest_of_line.replace('\\"', ""):
        return ('unclosed string: it needs a closing `"` on the same line', None)
    if char == "&":
        return ("unexpected `&`", "write `and` to combine conditions")
    if char == "|":
        return ("unexpected `|`", "write `or` to combine conditions")
    if char == "!":
        return ("unexpected `!`", "write `not` to negate a condition, `!=` for 'not equal'")
    if char == "=":
        return ("unexpected `=`", "write `==` to compare, or `:` to name an argument")
    shown = repr(char)[1:-1] if char else "end of input"
    return f"unexpected character `{shown}`; expected {_expected_words(_acceptable(error), parser)}", None


def _unexpected_token(error: UnexpectedToken, parser: Lark) -> tuple[str, str | None]:
    token, expected = error.token, _acceptable(error)
    found = "the end of the file" if token.type == "$END" else f"`{token}`"
    head = "the file ends too early" if token.type == "$END" else f"unexpected {found}"
    keyword = _keyword_used_as_name(error)
    if keyword and _read_as_value(error):
        return (
            f"expected a value before `{keyword}`",
            f"`{keyword}` is a keyword; the expression before it is incomplete",
        )
    if keyword:
        return (f"expected a name before `{keyword}`", f"`{keyword}` is a keyword, so it cannot be a name")
    if token.type == "EQUAL" and "COLON" in expected:
        return ("arguments are written `name: value`, not `name = value`", "use `:` instead of `=`")
    if token.type == "EQUAL":
        return ("`=` is not a comparison", "use `==` to test equality")
    if "THEN" in expected and (token.type in _ACTION_KEYWORDS or token.type in _ITEM_KEYWORDS):
        return (f"missing `then` before {found}", "a rule reads: when CONDITION then ACTION, ...")
    if "WHEN" in expected and token.type == "THEN":
        return ("missing `when`: a rule needs a condition before `then`", None)
    if token.type == "NAME" and _previous_is(error, "INT") and str(token) in _UNIT_WORDS:
        return (f"unexpected `{token}` after a number", f"write {_UNIT_WORDS[str(token)]} with no space")
    if "COLON" in expected and _previous_is(error, "NAME") and token.type not in _ITEM_KEYWORDS:
        return (f"{head}; expected `:`", _COLON_HELP[_item_keyword(error)])
    if expected == {"BINDER_KIND"}:
        return (f"{head}; expected `position` or `order`", "a rule loops over `for position p` or `for order o`")
    if token.type == "VBAR":
        return ("unexpected `|`", "write `or` to combine conditions")
    if token.type == "NAME" and expected >= _ACTION_KEYWORDS:
        return (f"`{token}` is not an action", f"the actions are {_ACTION_LIST}")
    if _previous_is(error, "SEVERITY"):
        return (f"{head}; expected a severity", "write one of info, low, medium, high or critical")
    return f"{head}; expected {_expected_words(expected, parser)}", None


def _acceptable(error: UnexpectedInput) -> set[str]:
    """What the parser would truly accept here: LALR's raw expected set also holds tokens that
    only fit in other contexts that share the state, so each candidate is tried on a copy."""
    raw = set(getattr(error, "expected", None) or getattr(error, "allowed", None) or ())
    state = getattr(error, "state", None)
    if state is None or not hasattr(state, "feed_token"):
        return raw
    conf = copy(state.parse_conf)
    conf.callbacks = {}  # simulate the parse only: build no tree
    accepted = {name for name in raw if _feeds(state, conf, name)}
    return accepted or raw


def _feeds(state, conf, terminal: str) -> bool:
    trial = state.copy(deepcopy_values=False)
    trial.parse_conf = conf
    try:
        trial.feed_token(Token(terminal, ""))
    except UnexpectedInput:
        return False
    return True


def _read_as_value(error: UnexpectedToken) -> bool:
    """Whether the keyword read as a name stood where a value could start (`a > then`), rather
    than where only a name fits (`rule when`). Looks at the parser state before the keyword."""
    state = getattr(error, "state", None)
    try:
        before = state.parse_conf.parse_table.states[state.state_stack[-2]]
    except (AttributeError, IndexError, KeyError):
        return True
    return "INT" in before


def _item_keyword(error: UnexpectedInput) -> str:
    """`rule`, `use` or `policy`: the item being parsed when the error happened."""
    values = getattr(getattr(error, "state", None), "value_stack", None) or []
    for value in values:
        if isinstance(value, Token) and value.type in ("RULE", "USE", "POLICY"):
            return str(value)
    return "use"


_COLON_HELP = {
    "rule": "parameters are written `name: type`, e.g. `limit: money` or `grace: duration = 30s`",
    "use": "arguments are written `name: value`",
    "policy": "arguments are written `name: value`",
}
_ACTIONS = ("flatten", "close", "reduce", "reduce_total", "cancel_orders", "cancel", "lockout", "block", "move_stop")
_ACTION_LIST = ", ".join(_ACTIONS + ("place_stop", "place_target")) + " and alert"


_UNIT_WORDS = {"s": "30s", "m": "15m", "h": "1h", "d": "2d", "sec": "30s", "min": "15m", "secs": "30s", "mins": "15m"}


def previous_token(error: UnexpectedInput) -> Token | None:
    """The token read just before the error (Lark records ``[None]`` when there was none)."""
    history = getattr(error, "token_history", None) or []
    if history and history[-1] is not None:
        return history[-1]
    values = getattr(getattr(error, "state", None), "value_stack", None) or []  # at end of input
    return values[-1] if values and isinstance(values[-1], Token) else None


def keyword_used_as_name(error: UnexpectedInput) -> Token | None:
    """A reserved word that the lexer read as a name because no keyword fitted there."""
    token = previous_token(error)
    return token if token is not None and token.type == "NAME" and str(token) in RESERVED else None


def _keyword_used_as_name(error: UnexpectedToken) -> str | None:
    token = keyword_used_as_name(error)
    return str(token) if token is not None else None


def _previous_is(error: UnexpectedToken, token_type: str) -> bool:
    token = previous_token(error)
    return token is not None and token.type == token_type


def _expected_words(expected: set[str], parser: Lark) -> str:
    remaining = set(expected)
    words: list[str] = []
    for trigger, absorbed, word in _GROUPS:
        if trigger <= remaining:
            remaining -= absorbed
            words.append(word)
    words.extend(sorted(_word(name, parser) for name in remaining))
    if not words:
        return "something else"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _word(name: str, parser: Lark) -> str:
    if name in WORDS:
        return WORDS[name]
    try:
        pattern = parser.get_terminal(name).pattern
    except KeyError:
        return name.lower()
    if isinstance(pattern, PatternStr):
        return f"`{pattern.value}`"
    return name.lower()
