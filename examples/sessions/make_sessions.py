"""Build the example sessions in this folder: recordings in the format of PRODUCT.md §6.1, made
to show the rules of ``policies/topstep-50k.risk`` at work under ``riskc replay``.

    python examples/sessions/make_sessions.py            # rewrite the .jsonl files (and engine/sim/demo.jsonl)
    python examples/sessions/make_sessions.py --check    # exit 1 if a file is not what it builds

Deterministic: no clock, no randomness beyond a seeded wiggle, so the files are reproducible
byte for byte. Each session is a story told as the trader's account saw it *without* riskc
(what a recording of a live session holds); `riskc replay` adds riskc's own calls through the
simulated broker. Payloads copy the Gateway's (see /work/shared/samples): OrderSide BUY=0
SELL=1; OrderType LIMIT=1 MARKET=2 STOP=4; OrderStatus OPEN=1 FILLED=2 CANCELLED=3;
PositionType LONG=1 SHORT=2, a closed position is size 0 type 0; the opening half of a trade
has ``profitAndLoss: null``; the balance moves after closing trades.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from riskc.engine.adapters.projectx.intake import Malformed, Message, parse_line

HERE = Path(__file__).resolve().parent
UTC = dt.UTC
BUY, SELL = 0, 1
LIMIT, MARKET, STOP = 1, 2, 4
OPEN, FILLED, CANCELLED = 1, 2, 3
LONG, SHORT = 1, 2
ACCOUNT_ID, ACCOUNT_NAME = 13298777, "50KTC-V2-1234567"

# tick size, point value, fee per contract per side (the simulated broker charges the same)
SPECS = {
    "MNQ": (Decimal("0.25"), Decimal("2"), Decimal("0.37")),
    "MES": (Decimal("0.25"), Decimal("5"), Decimal("0.37")),
    "CLE": (Decimal("0.01"), Decimal("1000"), Decimal("1.40")),  # CL: the Gateway's code is CLE
}


def product(contract_id: str) -> str:
    return contract_id.split(".")[3]


@dataclass
class Position:
    id: int
    size: int  # signed
    avg: Decimal
    opened: dt.datetime


@dataclass
class Session:
    """One recording under construction. Times are seconds after ``start``."""

    start: dt.datetime
    balance: Decimal = Decimal("50000.00")
    seed: int = 1
    lines: list[tuple[dt.datetime, int, str]] = field(default_factory=list)
    quotes: dict[str, list[tuple[dt.datetime, Decimal]]] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    closed: dict[str, Position] = field(default_factory=dict)
    orders: dict[int, dict] = field(default_factory=dict)
    next_order: int = 1_874_200_001
    next_trade: int = 1_532_700_001
    next_position: int = 418_808_301

    def at(self, seconds: float) -> dt.datetime:
        return self.start + dt.timedelta(seconds=seconds)

    def emit(self, ts: dt.datetime, target: str, args: list) -> None:
        hub = "market" if target in ("GatewayQuote", "GatewayTrade") else "user"
        self._add(ts, Message(ts, hub, target, args).to_json())

    def emit_raw(self, seconds: float, text: str) -> None:
        """A line as it is, for the malformed-line examples."""
        self._add(self.at(seconds), text)

    def _add(self, ts: dt.datetime, text: str) -> None:
        self.lines.append((ts, len(self.lines), text))

    def render(self) -> str:
        return "".join(text + "\n" for _, _, text in sorted(self.lines))

    # -- the market ---------------------------------------------------------------------------

    def market(self, contract_id: str, path: list[tuple[float, str]], *, trades_every: int = 7) -> None:
        """A quote about every second from the first to the last point of ``path`` (seconds,
        price), the price moving linearly between points with a small seeded wiggle. Quotes land
        at a fraction of a second, so a rule that fires on the whole second is the clock's doing."""
        tick, _, _ = SPECS[product(contract_id)]
        symbol_id = "F.US." + product(contract_id)
        state = self.seed * 7919 + len(self.quotes) * 104729
        series = self.quotes.setdefault(contract_id, [])
        first, last = int(path[0][0]), int(path[-1][0])
        for second in range(first, last + 1):
            state = (state * 1103515245 + 12345) % 2**31
            wiggle = (state >> 16) % 3 - 1  # -1, 0 or +1 tick
            price = _along(path, second) + wiggle * tick
            price = (price / tick).quantize(Decimal(1)) * tick
            ts = self.at(second + 0.05 + ((state >> 8) % 90) / 100)
            series.append((ts, price))
            stamp = ts.isoformat()
            self.emit(
                ts,
                "GatewayQuote",
                [
                    contract_id,
                    {
                        "symbol": symbol_id,
                        "lastPrice": price,
                        "bestBid": price - tick,
                        "bestAsk": price,
                        "timestamp": stamp,
                    },
                ],
            )
            if trades_every and second % trades_every == 0:
                self.emit(
                    ts,
                    "GatewayTrade",
                    [
                        contract_id,
                        [
                            {
                                "symbolId": symbol_id,
                                "price": price,
                                "timestamp": stamp,
                                "type": 0,
                                "volume": 1 + (state >> 4) % 9,
                            }
                        ],
                    ],
                )

    def price(self, contract_id: str, seconds: float) -> Decimal:
        """The last quoted price at that time: where a market order fills."""
        ts = self.at(seconds)
        last = None
        for quoted, price in self.quotes[contract_id]:
            if quoted > ts:
                break
            last = price
        if last is None:
            raise ValueError(f"no quote for {contract_id} before {ts}")
        return last

    # -- the account --------------------------------------------------------------------------

    def account(self, seconds: float, *, can_trade: bool = True) -> None:
        ts = self.at(seconds)
        self.emit(
            ts,
            "GatewayUserAccount",
            [
                {
                    "action": 1,
                    "data": {
                        "id": ACCOUNT_ID,
                        "name": ACCOUNT_NAME,
                        "balance": self.balance,
                        "canTrade": can_trade,
                        "isVisible": True,
                        "simulated": True,
                    },
                }
            ],
        )

    def _order(self, ts: dt.datetime, order: dict, **changes) -> None:
        order.update(changes, updateTimestamp=ts.isoformat())
        self.emit(ts, "GatewayUserOrder", [{"action": 1, "data": dict(order)}])

    def _new_order(
        self,
        seconds: float,
        contract_id: str,
        side: int,
        size: int,
        kind: int,
        limit: Decimal | None = None,
        stop: Decimal | None = None,
    ) -> dict:
        ts = self.at(seconds)
        order = {
            "id": self.next_order,
            "accountId": ACCOUNT_ID,
            "contractId": contract_id,
            "symbolId": "F.US." + product(contract_id),
            "creationTimestamp": ts.isoformat(),
            "updateTimestamp": ts.isoformat(),
            "status": OPEN,
            "type": kind,
            "side": side,
            "size": size,
            "limitPrice": limit,
            "stopPrice": stop,
            "fillVolume": 0,
            "filledPrice": None,
            "customTag": None,
        }
        self.next_order += 1
        self.orders[order["id"]] = order
        self._order(ts, order)
        return order

    def buy(self, seconds: float, contract_id: str, size: int) -> Decimal:
        return self.market_order(seconds, contract_id, BUY, size)

    def sell(self, seconds: float, contract_id: str, size: int) -> Decimal:
        return self.market_order(seconds, contract_id, SELL, size)

    def market_order(self, seconds: float, contract_id: str, side: int, size: int) -> Decimal:
        """A market order: OPEN, then FILLED at the last quote 0.3 s later, its trade, the
        position update and, for a closing trade, the account update."""
        order = self._new_order(seconds, contract_id, side, size, MARKET)
        price = self.price(contract_id, seconds + 0.3)
        self._fill(order, seconds + 0.3, price)
        return price

    def stop(self, seconds: float, contract_id: str, side: int, size: int, price: str | Decimal) -> int:
        return self._new_order(seconds, contract_id, side, size, STOP, stop=Decimal(price))["id"]

    def limit(self, seconds: float, contract_id: str, side: int, size: int, price: str | Decimal) -> int:
        return self._new_order(seconds, contract_id, side, size, LIMIT, limit=Decimal(price))["id"]

    def cancel(self, seconds: float, order_id: int) -> None:
        order = self.orders.pop(order_id)
        self._order(self.at(seconds), order, status=CANCELLED)

    def stop_filled(self, seconds: float, order_id: int) -> None:
        """The stop triggers: it fills at its stop price (the market path is made to reach it)."""
        order = self.orders[order_id]
        self._fill(order, seconds, order["stopPrice"])

    def _fill(self, order: dict, seconds: float, price: Decimal) -> None:
        ts = self.at(seconds)
        self.orders.pop(order["id"], None)
        self._order(ts, order, status=FILLED, fillVolume=order["size"], filledPrice=price)
        contract_id, side, size = order["contractId"], order["side"], order["size"]
        _, point_value, fee = SPECS[product(contract_id)]
        fees = fee * size
        pnl = self._book_fill(contract_id, side, size, price, ts)
        self.emit(
            ts,
            "GatewayUserTrade",
            [
                {
                    "action": 1,
                    "data": {
                        "id": self.next_trade,
                        "accountId": ACCOUNT_ID,
                        "contractId": contract_id,
                        "creationTimestamp": ts.isoformat(),
                        "price": price,
                        "profitAndLoss": pnl,
                        "fees": fees,
                        "side": side,
                        "size": size,
                        "voided": False,
                        "orderId": order["id"],
                    },
                }
            ],
        )
        self.next_trade += 1
        self.balance -= fees
        position = self.positions.get(contract_id)
        later = ts + dt.timedelta(milliseconds=20)  # the Gateway sends these together
        if position is None:
            closed = self.closed[contract_id]
            data = {
                "id": closed.id,
                "accountId": ACCOUNT_ID,
                "contractId": contract_id,
                "creationTimestamp": closed.opened.isoformat(),
                "type": 0,
                "size": 0,
                "averagePrice": closed.avg,
            }
        else:
            data = {
                "id": position.id,
                "accountId": ACCOUNT_ID,
                "contractId": contract_id,
                "creationTimestamp": position.opened.isoformat(),
                "type": LONG if position.size > 0 else SHORT,
                "size": abs(position.size),
                "averagePrice": position.avg,
            }
        self.emit(later, "GatewayUserPosition", [{"action": 1, "data": data}])
        if pnl is not None:
            self.balance += pnl
            self.account(seconds + 0.04)

    def _book_fill(self, contract_id: str, side: int, size: int, price: Decimal, ts: dt.datetime) -> Decimal | None:
        """The trader's position after a fill; the trade's P&L (None for an opening fill)."""
        _, point_value, _ = SPECS[product(contract_id)]
        signed = size if side == BUY else -size
        position = self.positions.get(contract_id)
        if position is None:
            self.positions[contract_id] = Position(self.next_position, signed, price, ts)
            self.next_position += 1
            return None
        if (position.size > 0) == (signed > 0):
            total = position.size + signed
            position.avg = (position.avg * position.size + price * signed) / total
            position.avg = position.avg.quantize(Decimal("0.000001")).normalize()
            position.size = total
            return None
        if size > abs(position.size):
            raise ValueError("a fill that flips a position: not used in these sessions")
        direction = 1 if position.size > 0 else -1
        pnl = ((price - position.avg) * direction * size * point_value).quantize(Decimal("0.01"))
        position.size += signed
        if position.size == 0:
            self.closed[contract_id] = self.positions.pop(contract_id)
        return pnl


def _along(path: list[tuple[float, str]], second: float) -> Decimal:
    for (t0, p0), (t1, p1) in zip(path, path[1:], strict=False):
        if t0 <= second <= t1:
            share = Decimal(str((second - t0) / (t1 - t0))) if t1 > t0 else Decimal(0)
            return Decimal(p0) + (Decimal(p1) - Decimal(p0)) * share
    return Decimal(path[-1][1])


# -- the sessions -------------------------------------------------------------------------------

MNQ_Z25, MES_Z25, CL_F26 = "CON.F.US.MNQ.Z25", "CON.F.US.MES.Z25", "CON.F.US.CLE.F26"


def daily_loss() -> Session:
    """Four losing MNQ trades of about $280 each (each under the $300 cooldown) take the day's
    realized P&L below -$1,000 while an MES position and a resting limit order are open: riskc
    flattens and locks the account until the next trading day. Ten minutes later the trader buys
    again; lockout enforcement closes it and cancels the stop placed with it. Two malformed
    lines are counted and skipped."""
    s = Session(dt.datetime(2025, 11, 12, 15, 0, tzinfo=UTC), seed=11)  # 09:00 CST
    s.market(
        MNQ_Z25,
        [
            (1, "25480"),
            (105, "25446"),
            (112, "25444"),
            (150, "25440"),
            (255, "25474"),
            (262, "25476"),
            (300, "25460"),
            (395, "25426"),
            (402, "25424"),
            (450, "25432"),
            (535, "25413"),
            (542, "25410"),
            (720, "25418"),
        ],
    )
    s.market(MES_Z25, [(1, "6850"), (200, "6852"), (720, "6856")], trades_every=0)
    s.account(0)
    entry = s.buy(10, MNQ_Z25, 4)
    stop = s.stop(13, MNQ_Z25, SELL, 4, entry - 35)
    s.stop_filled(110, stop)
    s.emit_raw(
        60.5,
        '{"ts": "2025-11-12T15:01:00.500000+00:00", "hub": "market", "target": "GatewayQuote", '
        '"args": ["CON.F.US.MNQ.Z25", {"lastPrice": 25468.25, "bestBid": 254',
    )
    s.emit_raw(
        61.5,
        '{"hub": "market", "target": "GatewayQuote", "args": ["CON.F.US.MNQ.Z25", '
        '{"lastPrice": 25468.5, "bestBid": 25468.25, "bestAsk": 25468.5}]}',
    )
    entry = s.sell(150, MNQ_Z25, 4)
    stop = s.stop(153, MNQ_Z25, BUY, 4, entry + 35)
    s.stop_filled(260, stop)
    mes = s.buy(200, MES_Z25, 1)
    s.stop(203, MES_Z25, SELL, 1, mes - 10)
    entry = s.buy(300, MNQ_Z25, 4)
    stop = s.stop(303, MNQ_Z25, SELL, 4, entry - 35)
    s.stop_filled(400, stop)
    s.limit(420, MNQ_Z25, BUY, 2, "25300")
    entry = s.buy(450, MNQ_Z25, 4)
    stop = s.stop(453, MNQ_Z25, SELL, 4, entry - 20)
    s.stop_filled(540, stop)
    entry = s.buy(600, MNQ_Z25, 2)  # back in, ten minutes into a lockout
    s.stop(603, MNQ_Z25, SELL, 2, entry - 20)
    return s


def scale_in() -> Session:
    """Two MNQ long with a stop for two; at 16:01:00 the trader adds two more (in profit) and
    leaves the stop at two. The 30-second grace of stop_required runs from the scale-in and ends
    at 16:01:30 on a clock tick (no message arrives on that second): riskc closes all four."""
    s = Session(dt.datetime(2025, 12, 3, 16, 0, tzinfo=UTC), seed=23)  # 10:00 CST
    s.market(MNQ_Z25, [(1, "25600"), (50, "25614"), (60, "25616"), (120, "25611"), (150, "25613")])
    s.account(0)
    entry = s.buy(5, MNQ_Z25, 2)
    s.stop(8, MNQ_Z25, SELL, 2, entry - 20)
    s.buy(59.68, MNQ_Z25, 2)  # filled 16:00:59.98, position update at 16:01:00.000
    return s


def session_end_dst(day: dt.date, contract_id: str, base: str) -> Session:
    """An MES position held into the end of the trading window (15:08 Chicago) on the first
    trading day after a DST change: riskc flattens at 15:08:00 local time, which is 20:08 UTC in
    daylight time and 21:08 UTC in standard time, and cancels the order the trader places after."""
    chicago_offset = 5 if day.month == 3 else 6  # CDT after the spring change, CST after the fall one
    start = dt.datetime.combine(day, dt.time(14 + chicago_offset, 50), UTC)  # 14:50 Chicago
    s = Session(start, seed=day.toordinal() % 97)
    lo = Decimal(base)
    s.market(
        contract_id,
        [(1, base), (600, str(lo + 6)), (1080, str(lo + 4)), (1500, str(lo + 5)), (1860, str(lo + 3))],
        trades_every=11,
    )
    s.account(0)
    entry = s.buy(30, contract_id, 2)
    s.stop(33, contract_id, SELL, 2, entry - 8)
    s.limit(1500, contract_id, BUY, 1, lo)  # 15:15: back in after the close, while locked out
    return s


def symbol_block() -> Session:
    """An ordinary MNQ trade (no action), then a crude oil buy: topstep-50k blocks CL, so riskc
    closes it, cancels the stop placed with it and blocks CL until the next trading day; a
    later CL limit order is cancelled by the block while MNQ trades on undisturbed."""
    s = Session(dt.datetime(2025, 11, 19, 15, 30, tzinfo=UTC), seed=37)  # 09:30 CST
    s.market(MNQ_Z25, [(1, "24600"), (200, "24630"), (300, "24628")])
    s.market(CL_F26, [(1, "59.40"), (150, "59.46"), (300, "59.38")], trades_every=5)
    s.account(0)
    entry = s.buy(10, MNQ_Z25, 1)
    mnq_stop = s.stop(12, MNQ_Z25, SELL, 1, entry - 20)
    entry = s.buy(60, CL_F26, 1)
    s.stop(62, CL_F26, SELL, 1, entry - Decimal("0.25"))
    s.limit(120, CL_F26, BUY, 1, "59.30")
    s.sell(200, MNQ_Z25, 1)
    s.cancel(201, mnq_stop)
    return s


def demo() -> Session:
    """Five minutes for the embedded demo of `riskc run`, in the order a trader meets them: a
    scale-in without stop coverage closed at 0:42, a crude oil trade closed and blocked at 1:05,
    four losing MES trades, the daily loss limit at 4:10 (flatten, lockout until 17:00), and a
    re-entry during the lockout closed at once."""
    s = Session(dt.datetime(2026, 1, 14, 14, 45, tzinfo=UTC), seed=5)  # 08:45 CST
    mnq, mes, cl = "CON.F.US.MNQ.H26", "CON.F.US.MES.H26", "CON.F.US.CLE.H26"
    s.market(mnq, [(1, "25900"), (11, "25910"), (40, "25902"), (300, "25896")])
    s.market(
        mes,
        [
            (1, "6950"),
            (90, "6950"),
            (124, "6940.5"),
            (140, "6940"),
            (169, "6949.5"),
            (180, "6948"),
            (209, "6938.5"),
            (220, "6938"),
            (249, "6947.5"),
            (300, "6945"),
        ],
        trades_every=0,
    )
    s.market(cl, [(1, "61.20"), (300, "61.26")], trades_every=0)
    s.account(0)
    entry = s.buy(3, mnq, 2)
    s.stop(6, mnq, SELL, 2, entry - 25)
    s.buy(11.4, mnq, 2)  # scale-in to 4, the stop still for 2: closed at 0:42
    s.buy(65, cl, 1)  # crude oil: blocked
    for start, side in ((90, BUY), (140, SELL), (180, BUY), (220, SELL)):
        entry = s.market_order(start, mes, side, 5)
        stop_side = SELL if side == BUY else BUY
        stop = s.stop(start + 3, mes, stop_side, 5, entry - 10 if side == BUY else entry + 10)
        s.stop_filled(start + 30, stop)
    s.limit(215, mnq, BUY, 2, "25850")
    entry = s.buy(280, mes, 2)  # back in during the lockout
    s.stop(283, mes, SELL, 2, entry - 10)
    return s


SESSIONS = {
    "daily-loss-lockout": daily_loss,
    "scale-in-partial-stop": scale_in,
    "session-end-dst-2026-03-09": lambda: session_end_dst(dt.date(2026, 3, 9), "CON.F.US.MES.H26", "6810"),
    "session-end-dst-2026-11-02": lambda: session_end_dst(dt.date(2026, 11, 2), "CON.F.US.MES.Z26", "6920"),
    "symbol-block": symbol_block,
    "demo": demo,
}


def build(name: str) -> str:
    text = SESSIONS[name]().render()
    for number, line in enumerate(text.splitlines(), 1):  # every line we meant to be good is
        item = parse_line(line, number)
        if isinstance(item, Malformed) and name != "daily-loss-lockout":
            raise AssertionError(f"{name}: {item.describe()}")
    return text


# The embedded demo of `riskc run` plays a copy shipped as package data of `engine` (an installed
# riskc has no examples/ folder).
REPO = HERE.parents[1]
PACKAGED = {"demo": (REPO / "engine" / "sim" / "demo.jsonl",)}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in SESSIONS:
        text = build(name)
        for path in (HERE / f"{name}.jsonl", *PACKAGED.get(name, ())):
            if check:
                if not path.exists() or path.read_text(encoding="utf-8") != text:
                    stale.append(str(path.relative_to(REPO)))
            else:
                path.write_text(text, encoding="utf-8")
                print(f"{path.relative_to(REPO)}: {text.count(chr(10))} lines")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python {Path(__file__).name})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
