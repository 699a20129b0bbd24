"""The nesting limit: riskc reads expressions nested at most ``MAX_DEPTH`` levels deep.

The parser (LALR) reads any depth, but what follows it walks the tree recursively - building the
AST, checking, compiling, formatting - and Python itself refuses generated code nested deeper
than 200 parentheses. So a parse tree deeper than the limit is reported as one diagnostic at the
place it gets too deep, before anything walks it, instead of a ``RecursionError`` (or a policy
reload that dies without a word). A chain of ``and``, ``+``, ``not`` or unary ``-`` nests one level
per term; real policies stay under 20.
"""

from __future__ import annotations

from lark import Token, Tree

from riskc.dsl.errors import TOO_DEEP, Diagnostic, Span

MAX_DEPTH = 128


def too_deep(tree: Tree, file: str) -> Diagnostic | None:
    """A diagnostic at the first node past ``MAX_DEPTH`` (iteratively: no recursion), or None."""
    stack: list[tuple[Tree | Token, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return Diagnostic(
                TOO_DEEP,
                f"this expression nests more than {MAX_DEPTH} levels deep",
                _span(node, file),
                help=f"split it into smaller rules: riskc reads at most {MAX_DEPTH} levels of nesting "
                "(each term of a chain of `and`, `+`, `not` or `-` is one level)",
            )
        if isinstance(node, Tree):
            stack.extend((child, depth + 1) for child in node.children)
    return None


def _span(node: Tree | Token, file: str) -> Span:
    if isinstance(node, Token) and node.line is not None:
        return Span(file, node.line, node.column, node.end_line or node.line, node.end_column or node.column + 1)
    meta = getattr(node, "meta", None)
    if meta is not None and not meta.empty:
        return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)
    return Span(file, 1, 1, 1, 2)
