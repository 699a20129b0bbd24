"""The status board in a real browser: the embedded demo (`riskc run` with no config) serves it,
headless Chromium loads it, and the page follows the session live (server-sent events, no
reload): the account, a lockout with its countdown, an action with its reason, the trading state
turning to halted. A screenshot is kept as a test artifact (build/test-artifacts/)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from headless_chromium import Browser, find_chromium

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RISKC_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))


def start_demo(tmp: Path, speed: float) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, XDG_STATE_HOME=str(tmp), PROJECT_X_USERNAME="", PROJECT_X_API_KEY="")
    env.pop("RISKC_CONFIG", None)
    command = [sys.executable, "-c", "from riskc.engine.cli.main import main; main()"]
    process = subprocess.Popen(
        [*command, "run", "--plain", "--web", "127.0.0.1:0", "--speed", str(speed), "--max-time", "90"],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        found = re.search(r"status board: (http://127\.0\.0\.1:\d+/)", line)
        if found:
            return process, found.group(1)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError("the demo printed no status board address:\n" + "".join(seen))


async def test_the_demo_board_updates_live_in_a_real_browser(tmp_path: Path) -> None:
    chromium = find_chromium()
    process, url = start_demo(tmp_path, speed=15)  # the five-minute session in 20 s
    try:
        async with Browser(chromium) as page:
            await page.goto(url)
            await page.wait_for("!!document.querySelector('.account .name')")
            await page.evaluate("window.sameDocument = true")  # gone if the page reloaded
            first = int(await page.evaluate("Number(document.body.dataset.updates)"))
            assert await page.evaluate("document.querySelector('.account .name').textContent") == "50KTC-V2-1234567"

            # The CL block: a symbol lockout with its countdown, and the action with its reason.
            countdown = await page.wait_for(
                "document.querySelector('.lockout[data-rule=symbol_block] .countdown')?.textContent"
            )
            assert re.fullmatch(r"\d+h\d\dm left", countdown), countdown
            reason = await page.wait_for(
                "document.querySelector('.action[data-action=block][data-rule=symbol_block] .reason')?.textContent"
            )
            assert "p.symbol = CL in [CL, NG]" in reason

            # The daily loss limit: the account halts, with the reason shown beside the state.
            await page.wait_for("!!document.querySelector('.state.halted')", timeout=40)
            state_reason = await page.evaluate("document.querySelector('.state-reason').textContent")
            assert "daily_loss" in state_reason or "day.realized_pnl" in state_reason
            flatten = await page.wait_for(
                "document.querySelector('.action[data-action=flatten][data-rule=daily_loss] .reason')?.textContent"
            )
            assert "day.realized_pnl" in flatten and "→ flatten" in flatten
            change = await page.evaluate(
                "document.querySelector('.action[data-action=trading_state][data-rule=daily_loss] .what')?.textContent"
            )
            assert change == "trading_state → halted"  # the §6.2 record of the change, with its reason below
            assert await page.evaluate("window.sameDocument === true")  # live updates, no reload
            assert int(await page.evaluate("Number(document.body.dataset.updates)")) > first + 3
            assert await page.evaluate("document.querySelector('svg.chart polyline.pnl') !== null")
            assert await page.evaluate("document.querySelector('svg.chart line.limit') !== null")  # daily loss line

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = await page.screenshot(ARTIFACTS / "board-demo.png")
            assert shot.stat().st_size > 10_000
    finally:
        process.kill()
        process.wait(timeout=10)
