"""`riskc record --out FILE`: capture the live Gateway's hub messages as a recording (PRODUCT.md §5,
§6.1) that `riskc replay` reads.

One message a line, written and flushed as it arrives, so killing the recorder loses at most the
line being written. Connection drops and reconnects are reported on stderr, not written: they are
not Gateway messages. Credentials come from the environment only (PROJECT_X_USERNAME,
PROJECT_X_API_KEY, optionally PROJECT_X_ACCOUNT_NAME).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

import click

from riskc.engine.cli.common import EXIT_FAILED, EXIT_USAGE, echo_err

if TYPE_CHECKING:
    from riskc.engine.adapters.projectx.sdk import Credentials, GatewayUrls


@click.command("record")
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False), help="The recording to write (JSON Lines)."
)
@click.option(
    "--contract",
    "contracts",
    multiple=True,
    metavar="CONTRACT_ID",
    help="Record this contract's market data (quotes, trades) too; repeatable.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Stop after this many seconds (default: until interrupted).",
)
@click.option(
    "--account",
    "account_name",
    default=None,
    help="Account name (default: PROJECT_X_ACCOUNT_NAME, else the first active account).",
)
@click.option("--append", is_flag=True, help="Add to FILE instead of replacing it.")
@click.option(
    "--no-follow", is_flag=True, help="Do not add the market data of contracts that have or get positions or orders."
)
@click.option("--api-url", default=None, help="Gateway REST root (default: https://api.topstepx.com/api).")
@click.option("--user-hub-url", default=None, help="User hub (default: https://rtc.topstepx.com/hubs/user).")
@click.option("--market-hub-url", default=None, help="Market hub (default: https://rtc.topstepx.com/hubs/market).")
def command(
    out: str,
    contracts: tuple[str, ...],
    duration: float | None,
    account_name: str | None,
    append: bool,
    no_follow: bool,
    api_url: str | None,
    user_hub_url: str | None,
    market_hub_url: str | None,
) -> None:
    """Record every message of the account's live Gateway session into OUT until interrupted
    (Ctrl-C or SIGTERM) or --duration ends; print how many were written."""
    from riskc.engine.adapters.projectx.sdk import (
        ConnectError,
        Credentials,
        GatewayUrls,
        MissingCredentials,
        quiet_sdk_logging,
    )

    try:
        credentials = Credentials.from_env()
    except MissingCredentials as error:
        echo_err(f"error: {error}")
        raise SystemExit(EXIT_USAGE) from None
    given = {"api_url": api_url, "user_hub_url": user_hub_url, "market_hub_url": market_hub_url}
    urls = GatewayUrls(**{name: value for name, value in given.items() if value})
    try:
        handle = open(out, "a" if append else "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as error:
        echo_err(f"error: cannot write {out}: {error.strerror or error}")
        raise SystemExit(EXIT_USAGE) from None
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    quiet_sdk_logging(logging.ERROR)  # its warnings repeat the hub events printed below
    count = 0
    try:
        with handle:
            count = asyncio.run(
                _record_until_signal(handle, credentials, urls, account_name, contracts, not no_follow, duration)
            )
    except ConnectError as error:
        echo_err(f"error: {error}")
        raise SystemExit(EXIT_FAILED) from None
    click.echo(f"recorded {count} message{'s' if count != 1 else ''} to {out}")


async def _record_until_signal(
    handle: TextIO,
    credentials: Credentials,
    urls: GatewayUrls,
    account_name: str | None,
    contracts: Iterable[str],
    follow: bool,
    duration: float | None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await record(
            handle,
            credentials,
            urls,
            account_name=account_name,
            contracts=contracts,
            follow=follow,
            duration=duration,
            stop=stop,
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def record(
    handle: TextIO,
    credentials: Credentials,
    urls: GatewayUrls,
    *,
    account_name: str | None = None,
    contracts: Iterable[str] = (),
    follow: bool = True,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    **connect_options: Any,
) -> int:
    """Write every hub message to ``handle`` (one §6.1 line each, flushed) until ``stop`` is set or
    ``duration`` seconds pass; return how many were written. Raises ``ConnectError``."""
    from riskc.engine.adapters.projectx.intake import Message
    from riskc.engine.adapters.projectx.sdk import ConnectionEvent, connect

    written = 0

    async def write(item: Message | ConnectionEvent) -> None:
        nonlocal written
        if isinstance(item, ConnectionEvent):
            echo_err(f"{item.ts:%H:%M:%S} {item.hub} hub {item.state}{f': {item.detail}' if item.detail else ''}")
            return
        handle.write(item.to_json() + "\n")
        handle.flush()
        written += 1

    stop = stop or asyncio.Event()
    connection = await connect(
        credentials, urls, account_name, sink=write, contracts=contracts, follow_contracts=follow, **connect_options
    )
    try:
        echo_err(f"recording account {connection.account.get('name')} ({connection.account_id}); stop with Ctrl-C")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
    finally:
        await connection.close()  # delivers what was received before it returns
    return written
