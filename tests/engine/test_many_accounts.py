"""Many accounts in one store (a desk, or one daemon with several accounts): the same session on
two accounts makes the same broker calls on each. The idempotency key names the account, so the
second account's close of the same contract on the same day is not taken for the first's."""

from __future__ import annotations

from pathlib import Path

from riskc.engine.adapters.projectx.intake import read_recording
from riskc.engine.runner import PolicySet
from riskc.engine.sim.replay import Replay
from riskc.engine.store import Store

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "engine" / "sim" / "demo.jsonl"


def test_two_accounts_in_one_store_each_get_their_calls(tmp_path: Path) -> None:
    policies, _, _ = PolicySet.from_paths([REPO / "policies" / "topstep-50k.risk"])
    assert policies is not None
    calls: dict[int, int] = {}
    with Store.open(tmp_path / "state.db", synchronous="OFF") as store:
        for account_id in (1001, 1002):
            session = tmp_path / f"{account_id}.jsonl"
            session.write_text(DEMO.read_text().replace("13298777", str(account_id)))
            replay = Replay(policies, store, account_id=account_id)
            calls[account_id] = replay.run(read_recording(str(session))).calls
        effects = {  # each account's actions, the account taken out of the key
            account_id: sorted(r.key.replace(f"{account_id}:", "") for r in store.recent_actions(account_id, 100))
            for account_id in (1001, 1002)
        }
    assert calls[1001] > 0 and calls[1001] == calls[1002]
    assert effects[1001] and effects[1001] == effects[1002]
