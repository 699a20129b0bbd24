"""A two-account recording for account groups (PRODUCT.md §9), built with the simulated
Gateway's wire builders (engine/sim/gateway.py): the same trades copied across two accounts.

Neither account reaches its own $1,250 daily loss, but together they pass the group's $1,500
at 08:31:00.2 CST, when B's third sale lands (A at -$702.59, B at -$802.59): both still hold one
MNQ, so the group's `flatten` closes each (A ends the day at -$1,103, B at -$1,203, each still
short of its own limit) and its lockout halts each until the next trading day.

    python tests/engine/group_session.py    # rewrite tests/fixtures/groups/two-accounts.jsonl
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from riskc.engine.adapters.projectx.intake import Message
from riskc.engine.sim import gateway

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "groups" / "two-accounts.jsonl"
START = dt.datetime(2026, 1, 14, 14, 30, tzinfo=dt.UTC)  # 08:30 CST
MNQ = "CON.F.US.MNQ.H26"
A, B = (1001, "COPY-A"), (1002, "COPY-B")
FEE = Decimal("0.37")


def at(seconds: float) -> dt.datetime:
    return START + dt.timedelta(seconds=seconds)


def price(second: float) -> Decimal:
    """21,000 falling to 20,800 over the first minute, then flat."""
    moved = Decimal(min(second, 60)) * Decimal(200) / Decimal(60)
    return (Decimal(21000) - moved).quantize(Decimal(1))  # whole points


def build() -> list[Message]:
    messages: list[Message] = []
    for second in range(0, 121):
        ts = at(second + 0.5)
        p = price(second)
        messages.append(Message(ts, "market", "GatewayQuote", gateway.quote_args(MNQ, p, p - Decimal("0.25"), p, ts)))
    for account_id, name in (A, B):
        messages.append(
            gateway.user("GatewayUserAccount", gateway.account_data(account_id, name, Decimal(50000), True), at(1))
        )
    ids = iter(range(900001, 999999))
    positions = {A[0]: 0, B[0]: 0}

    def trade(account, seconds: float, side: str, size: int, fill: Decimal, pnl: Decimal | None) -> None:
        account_id = account[0]
        ts = at(seconds)
        order_id = next(ids)
        order = gateway.order_data(
            order_id, MNQ, status="filled", type="market", side=side, size=size, created=ts, updated=ts
        )
        messages.append(gateway.user("GatewayUserOrder", {"accountId": account_id, **order}, ts))
        data = gateway.trade_data(
            next(ids),
            MNQ,
            side=side,
            size=size,
            price=fill,
            pnl=pnl,
            fees=FEE * size,
            voided=False,
            order_id=order_id,
            at=ts,
        )
        messages.append(gateway.user("GatewayUserTrade", {"accountId": account_id, **data}, ts))
        positions[account_id] += size if side == "buy" else -size
        held = gateway.position_data(MNQ, positions[account_id], Decimal(21000), at(5.2), account_id)
        messages.append(gateway.user("GatewayUserPosition", {"id": 400000 + account_id, **held}, ts))

    for account in (A, B):
        trade(account, 5.2, "buy", 4, Decimal(21000), None)
        trade(account, 20.2, "sell", 2, Decimal(20900), Decimal(-400))
    trade(A, 40.2, "sell", 1, Decimal(20850), Decimal(-150) * 2)
    trade(B, 60.2, "sell", 1, Decimal(20800), Decimal(-200) * 2)
    return sorted(messages, key=lambda m: m.ts)


def render() -> str:
    return "".join(m.to_json() + "\n" for m in build())


if __name__ == "__main__":
    FIXTURE.write_text(render(), encoding="utf-8")
