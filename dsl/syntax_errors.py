"""Turns Lark's "unexpected token" into a sentence a trader can act on.

Expected tokens are named in words (``a duration like 30s``, not ``DURATION``), and the mistakes
people actually make (a missing ``then``, ``1000$``, ``=`` for ``==``, an unclosed string) get a
message of their own.
"""

from __future__ import annotations

from lark import Lark
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
    "STRING": 'a string in double quotes',
    "SYMBOL": "a symbol like MNQ",
    "NAME": "a name",
    "COMPARE": "a comparison such as == or <",
    "ADD_OP": "`+` or `-`",
    "MUL_OP": "`*` or `/`",
    "BINDER_KIND": "`position` or `order`",
    "$END": "the end of the file",
}

# When a group's trigger terminals are all expected, its word replaces every terminal it absorbs.
_EXPRESSION_START = frozenset({
    "MONEY", "INT", "DECIMAL", "DURATION", "CLOCK", "NAME", "STRING", "SYMBOL", "DATE", "PERCENT",
    "LPAR", "LSQB", "LBRACE", "MINUS", "NOT", "TRUE", "FALSE", "NONE",
})  # fmt: skip
_GROUPS = (
    (frozenset({"MONEY", "INT", "NAME", "STRING"}), _EXPRESSION_START, "an expression"),
    (frozenset({"COMPARE", "ADD_OP", "MUL_OP"}), frozenset({"COMPARE", "ADD_OP", "MUL_OP", "DOT", "IN"}), "an operator"),
)
RESERVED = frozenset({
    "policy", "use", "as", "rule", "on", "for", "when", "then", "severity", "and", "or", "not", "in",
    "true", "false", "none", "to", "until", "while", "at", "manual", "flatten", "close", "reduce",
    "reduce_total", "cancel_orders", "cancel", "lockout", "block", "move_stop", "place_stop", "alert",
})  # fmt: skip
_ACTION_KEYWORDS = {
    "FLATTEN", "CLOSE", "REDUCE", "REDUCE_TOTAL", "CANCEL_ORDERS", "CANCEL", "LOCKOUT", "BLOCK",
    "MOVE_STOP", "PLACE_STOP", "ALERT",
}  # fmt: skip
_ITEM_KEYWORDS = {"RULE", "USE", "$END"}


def describe_unexpected(error: UnexpectedInput, source: str, parser: Lark) -> tuple[str, str | None]:
    """(message, help) for a syntax error."""
    if isinstance(error, UnexpectedCharacters):
        return _unexpected_character(error, source, parser)
    assert isinstance(error, UnexpectedToken)
    return _unexpected_token(error, parser)


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
        return ("unclosed string: it needs a closing `\"` on the same line", None)
    if char == "&":
        return ("unexpected `&`", "write `and` to combine conditions")
    if char == "|":
        return ("unexpected `|`", "write `or` to combine conditions")
    if char == "!":
        return ("unexpected `!`", "write `not` to negate a condition, `!=` for 'not equal'")
    if char == "=":
        return ("unexpected `=`", "write `==` to compare, or `:` to name an argument")
    shown = repr(char)[1:-1] if char else "end of input"
    return f"unexpected character `{shown}`; expected {_expected_words(error.allowed or set(), parser)}", None


def _unexpected_token(error: UnexpectedToken, parser: Lark) -> tuple[str, str | None]:
    token, expected = error.token, _acceptable(error)
    found = "the end of the file" if token.type == "$END" else f"`{token}`"
    keyword = _keyword_used_as_name(error)
    if keyword:
        return (f"expected a value before `{keyword}`", f"`{keyword}` is a keyword; the expression before it is incomplete")
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
        return (f"unexpected {found}; expected `:`", "arguments are written `name: value`")
    if token.type == "$END":
        return (f"the file ends too early; expected {_expected_words(expected, parser)}", None)
    return f"unexpected {found}; expected {_expected_words(expected, parser)}", None


def _acceptable(error: UnexpectedToken) -> set[str]:
    """What the parser would truly accept here: LALR's raw expected set also holds tokens that
    only fit in other contexts that share the state."""
    interactive = getattr(error, "interactive_parser", None)
    if interactive is not None:
        try:
            return set(interactive.accepts())
        except Exception:  # accepts() simulates the parse; fall back to the raw set
            pass
    return set(error.expected)


_UNIT_WORDS = {"s": "30s", "m": "15m", "h": "1h", "d": "2d", "sec": "30s", "min": "15m", "secs": "30s", "mins": "15m"}


def _keyword_used_as_name(error: UnexpectedToken) -> str | None:
    history = getattr(error, "token_history", None) or []
    if history and history[-1].type == "NAME" and str(history[-1]) in RESERVED:
        return str(history[-1])
    return None


def _previous_is(error: UnexpectedToken, token_type: str) -> bool:
    history = getattr(error, "token_history", None) or []
    return bool(history) and history[-1].type == token_type


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
