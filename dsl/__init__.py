"""The riskc policy language: text in, checked and compiled ``Program`` out.

Nothing here knows about brokers, SQLite or asyncio. ``engine`` imports ``dsl``, never the reverse.
"""

from riskc.dsl.errors import Diagnostic, RiskError, Severity, Span
from riskc.dsl.parser import ParseResult, parse

__all__ = ["Diagnostic", "ParseResult", "RiskError", "Severity", "Span", "parse"]
