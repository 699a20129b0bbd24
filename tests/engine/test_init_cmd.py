"""`riskc init [POLICY]`: a working folder from a ready-made policy, checked, tested and replayed
by the three commands it prints; `--list`; it never overwrites."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from riskc.engine.cli.main import main
from riskc.engine.daemon.config import load_config


def test_init_lists_the_ready_made_policies():
    result = CliRunner().invoke(main, ["init", "--list"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names == ["conservative-micro", "prop-eval-generic", "topstep-150k", "topstep-50k"]
    assert "Topstep 50K Combine  (default)" in result.output


def test_init_writes_a_folder_whose_next_three_commands_work(tmp_path: Path, monkeypatch):
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    assert sorted(str(p) for p in Path().rglob("*") if p.is_file()) == [
        "policies/tests/topstep-50k.yaml",
        "policies/topstep-50k.risk",
        "riskc.yaml",
        "sessions/demo.jsonl",
    ]
    nexts = [line.split("#")[0].split() for line in result.output.splitlines() if line.startswith("  riskc ")]
    assert [n[1] for n in nexts] == ["check", "test", "replay"]
    for command in nexts:
        ran = runner.invoke(main, command[1:])
        assert ran.exit_code == 0, (command, ran.output)
    config = load_config("riskc.yaml", environ={})  # runs as written: the sim broker, no secrets
    assert config.broker.kind == "sim" and not config.broker.needs_credentials
    assert config.accounts[0].policies == [Path(os.getcwd()) / "policies" / "topstep-50k.risk"]


def test_init_copies_another_policy_and_refuses_to_overwrite(tmp_path: Path, monkeypatch):
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(main, ["init", "conservative-micro"]).exit_code == 0
    assert Path("policies/conservative-micro.risk").is_file()
    again = runner.invoke(main, ["init", "conservative-micro"])
    assert again.exit_code == 2 and "does not overwrite" in again.stderr
    assert runner.invoke(main, ["init", "conservative-micro", "--force"]).exit_code == 0
    unknown = runner.invoke(main, ["init", "topstep-75k"])
    assert unknown.exit_code == 2 and "no ready-made policy `topstep-75k`" in unknown.stderr
