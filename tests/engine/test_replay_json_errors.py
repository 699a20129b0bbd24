"""`riskc replay --json` reports every malformed line on stderr as JSON, with its line number and
reason, before the summary: stderr stays machine-readable (PRODUCT.md §6.1)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from riskc.engine.cli.main import main

ROOT = Path(__file__).parents[2]
QUOTE = '{"ts": "2025-10-29T15:50:13+00:00", "hub": "market", "target": "GatewayQuote", "args": ["CON.F.US.MNQ.Z25", {"lastPrice": 1.0}]}'  # noqa: E501


def test_malformed_lines_are_json_on_stderr_with_their_line_numbers(tmp_path: Path) -> None:
    recording = tmp_path / "rec.jsonl"
    recording.write_text("\n".join([QUOTE, "not json", "[1, 2]", QUOTE]) + "\n")
    result = CliRunner().invoke(
        main, ["replay", str(recording), "--policy", str(ROOT / "policies/topstep-50k.risk"), "--json"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    malformed = [line["malformed"] for line in lines if "malformed" in line]
    assert [(m["line"], m["content"]) for m in malformed] == [(2, "not json"), (3, "[1, 2]")]
    assert all(m["reason"] for m in malformed)
    assert "summary" in lines[-1] and lines[-1]["summary"]["malformed"] == 2


def test_an_unusable_state_file_for_replay_is_exit_2(tmp_path: Path) -> None:
    recording = tmp_path / "rec.jsonl"
    recording.write_text(QUOTE + "\n")
    state = tmp_path / "state.db"
    state.write_bytes(b"")
    args = ["replay", str(recording), "--policy", str(ROOT / "policies/topstep-50k.risk"), "--state", str(state)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "state.db is empty" in result.output
