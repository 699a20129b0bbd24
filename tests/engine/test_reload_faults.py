"""A reload that fails in any way - a diagnostic, a nesting past the limit, an internal error -
is reported and alerted, keeps the last good set, and never stops the next reload."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from riskc.engine.daemon import reload
from riskc.engine.daemon.daemon import Activity
from riskc.engine.runner import PolicySet

GOOD = 'policy "t"\n  timezone America/Chicago\n\nuse max_contracts(limit: {limit})\n'


class FakeDaemon:
    def __init__(self) -> None:
        self.alerts = SimpleNamespace(sent=[])
        self.alerts.alert = lambda severity, text, **kw: self.alerts.sent.append((severity, text))
        self.records: list[dict] = []

    def log_record(self, record: dict) -> None:
        self.records.append(record)


def loop_for(path: Path) -> SimpleNamespace:
    policies, _, _ = PolicySet.from_paths([path])
    engine = SimpleNamespace(policies=policies, book=SimpleNamespace(account=SimpleNamespace(id=1)))
    return SimpleNamespace(paths=[path], engine=engine, activity=Activity(), queue=asyncio.Queue())


def test_every_kind_of_failed_reload_is_alerted_and_the_next_edit_still_counts(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "p.risk"
    path.write_text(GOOD.format(limit=5))
    daemon, lp = FakeDaemon(), loop_for(path)

    async def scenario() -> None:
        path.write_text(
            GOOD.format(limit=5) + "rule deep\n  when " + "not " * 2000 + "account.can_trade\n  then flatten\n"
        )
        assert (await reload.reload_loop(daemon, lp)).policies is None
        assert "risk_too_deep" in lp.activity.last_error

        path.write_bytes(b'policy "t"\n\xff\xfe\n')
        assert (await reload.reload_loop(daemon, lp)).policies is None
        assert "not UTF-8" in lp.activity.last_error

        def explode(*args, **kwargs):
            raise RecursionError("maximum recursion depth exceeded")

        with monkeypatch.context() as patch:
            patch.setattr(PolicySet, "from_sources", explode)
            path.write_text(GOOD.format(limit=3))
            assert (await reload.reload_loop(daemon, lp)).policies is None
        assert "internal error" in lp.activity.last_error and "RecursionError" in lp.activity.last_error

        path.write_text(GOOD.format(limit=2))
        assert (await reload.reload_loop(daemon, lp)).policies is not None
        assert lp.queue.qsize() == 1  # the good edit is swapped in

    asyncio.run(scenario())
    assert lp.activity.reload_errors == 3
    assert [s for s, _ in daemon.alerts.sent] == ["high", "high", "high", "info"]
    assert [r["outcome"] for r in daemon.records] == ["rejected", "rejected", "rejected", "swapped"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), MemoryError()])
def test_validate_never_raises(tmp_path: Path, monkeypatch, error) -> None:
    path = tmp_path / "p.risk"
    path.write_text(GOOD.format(limit=5))

    def explode(*args, **kwargs):
        raise error

    monkeypatch.setattr(reload, "run_fixtures", explode)
    candidate = reload.validate([path])
    assert candidate.policies is None and candidate.problems[0].startswith("internal error")
