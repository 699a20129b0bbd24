"""One rate limit per login, enforcement first (engine/adapters/admission.py), on a fake clock."""

from __future__ import annotations

import asyncio

from riskc.engine.adapters.admission import Admission, for_login


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_reads_leave_the_reserve_to_enforcement() -> None:
    clock = Clock()
    admission = Admission(10, 3, clock=clock, sleep=clock.sleep)
    for _ in range(7):
        await admission.acquire()
    read = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0)
    assert not read.done()  # 7 of 10 used: reads wait, the reserve is for enforcement
    await admission.acquire(3, urgent=True)  # a close (and its lookups) goes at once
    assert admission.used() == 10 and not read.done()
    await read
    assert clock.now >= 60.0  # the read went once the window had moved on


async def test_an_urgent_request_goes_before_waiting_reads() -> None:
    clock = Clock()
    admission = Admission(4, 1, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        await admission.acquire()
    order: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        await admission.acquire(urgent=urgent)
        order.append(name)

    await asyncio.gather(take("read", False), take("close", True))
    assert order == ["close", "read"]


async def test_a_429_holds_everything_for_its_retry_after() -> None:
    clock = Clock()
    admission = Admission(100, 10, clock=clock, sleep=clock.sleep)
    admission.retry_after(7.0)
    await admission.acquire(urgent=True)
    assert clock.now >= 7.0


def test_one_admission_per_login() -> None:
    a = for_login("https://gw/api", "alice")
    assert for_login("https://gw/api", "alice") is a and for_login("https://gw/api", "bob") is not a


async def test_a_refund_gives_back_what_was_not_sent() -> None:
    clock = Clock()
    admission = Admission(10, 0, clock=clock, sleep=clock.sleep)
    await admission.acquire(5)
    admission.refund(1)  # one of the five was a read shared with another account's
    assert admission.used() == 4
    admission.refund(10)
    assert admission.used() == 0


def test_a_logins_accounts_reconcile_within_its_read_budget() -> None:
    from types import SimpleNamespace

    from riskc.engine.daemon.live import reconcile_period

    options = SimpleNamespace(requests_per_minute=180, read_reserve=30)  # 150 reads a minute

    def period(accounts: int, every: float = 30.0) -> float:
        return reconcile_period(every, SimpleNamespace(options=options, accounts=dict.fromkeys(range(accounts))))

    assert [period(n) for n in (1, 15, 16, 40)] == [30.0, 30.0, 32.0, 80.0]
    assert period(40, every=120.0) == 120.0  # never more often than asked
    assert reconcile_period(30.0, object()) == 30.0  # not a ProjectX connection (sim)
