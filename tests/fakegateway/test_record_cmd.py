"""`riskc record` against the fake Gateway: every hub message becomes one PRODUCT.md §6.1 line that
reads back (engine.intake.parse_line) into the same target and arguments; SIGINT and SIGTERM stop
it cleanly with a count; no credentials is a usage error."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from riskc.engine.adapters.projectx.intake import Message, parse_line
from riskc.engine.adapters.projectx.sdk import Credentials, GatewayUrls
from riskc.engine.cli.main import main
from riskc.engine.cli.record_cmd import record

from .conftest import MNQ, bounded
from .server import FakeGateway
from .test_fake_gateway import SAMPLE

REPO = Path(__file__).resolve().parents[2]


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


async def wait_for_lines(path: Path, count: int, timeout: float = 5.0) -> None:
    async def _wait() -> None:
        while len(lines_of(path)) < count:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(_wait(), timeout)


def assert_reads_back(path: Path) -> None:
    for text, line in zip(lines_of(path), SAMPLE, strict=True):
        got = parse_line(text, 1)
        want = parse_line(json.dumps({"ts": "2025-10-29T15:40:38+00:00", **line}), 1)
        assert isinstance(got, Message) and isinstance(want, Message)
        assert (got.hub, got.target, got.args) == (want.hub, want.target, want.args)


async def push_sample(gw: FakeGateway) -> None:
    await gw.wait_for_invocation("SubscribeTrades", hub="user")
    await gw.wait_for_invocation("SubscribeContractMarketDepth", hub="market")
    for line in SAMPLE:
        assert await gw.push_recording_line(line) == 1


@bounded(20)
async def test_record_writes_one_line_per_message_that_reads_back(gw: FakeGateway, tmp_path: Path) -> None:
    out = tmp_path / "session.jsonl"
    stop = asyncio.Event()
    with out.open("w", encoding="utf-8") as handle:
        recording = asyncio.create_task(
            record(
                handle,
                Credentials(gw.username, gw.api_key),
                GatewayUrls(gw.api_url, gw.user_hub_url, gw.market_hub_url),
                contracts=[MNQ],
                stop=stop,
            )
        )
        await push_sample(gw)
        await wait_for_lines(out, len(SAMPLE))  # flushed line by line, before the recorder stops
        stop.set()
        assert await recording == len(SAMPLE)
    assert_reads_back(out)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@bounded(40)
async def test_the_command_records_until_a_signal_and_prints_the_count(
    gw: FakeGateway, tmp_path: Path, signum: int
) -> None:
    out = tmp_path / "session.jsonl"
    env = dict(os.environ, PROJECT_X_USERNAME=gw.username or "", PROJECT_X_API_KEY=gw.api_key or "")
    env.pop("PROJECT_X_ACCOUNT_NAME", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from riskc.engine.cli.main import main; main()",
        "record",
        "--out",
        str(out),
        "--contract",
        MNQ,
        "--api-url",
        gw.api_url,
        "--user-hub-url",
        gw.user_hub_url,
        "--market-hub-url",
        gw.market_hub_url,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.wait_for(push_sample(gw), 20)
        await wait_for_lines(out, len(SAMPLE))
        proc.send_signal(signum)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode() == f"recorded {len(SAMPLE)} messages to {out}\n"
    assert "recording account" in stderr.decode() and gw.api_key not in stderr.decode()
    assert_reads_back(out)


def test_no_credentials_is_a_usage_error(tmp_path: Path) -> None:
    env = {"PROJECT_X_USERNAME": "", "PROJECT_X_API_KEY": "", "PROJECT_X_ACCOUNT_NAME": ""}
    result = CliRunner().invoke(main, ["record", "--out", str(tmp_path / "x.jsonl")], env=env)
    assert result.exit_code == 2
    assert "PROJECT_X_USERNAME and PROJECT_X_API_KEY" in result.output
    assert not (tmp_path / "x.jsonl").exists()
