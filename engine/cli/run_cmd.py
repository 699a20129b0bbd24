"""`riskc run`: the daemon (PRODUCT.md §5). With no config and no credentials it runs the
embedded demo: the simulated broker plays a bundled session against policies/topstep-50k.risk."""

from __future__ import annotations

import asyncio
import sys

import click

from riskc.engine.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, echo_err

DEMO_SECONDS = 45.0  # how long the demo session should take on screen


@click.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="riskc.yaml (default: $RISKC_CONFIG, ./riskc.yaml, else the demo).",
)
@click.option("--speed", type=float, help="sim broker: recorded seconds per wall second (0 = as fast as possible).")
@click.option("--max-time", "max_seconds", type=float, help="Stop after this many seconds (tests, trials).")
@click.option(
    "--plain", is_flag=True, help="No live view: one line per action (default when stdout is not a terminal)."
)
@click.option(
    "--new-state",
    "new_state",
    is_flag=True,
    help="Start afresh when the state file is unusable or fails verification (the old one is kept aside).",
)
@click.option(
    "--web",
    "web",
    metavar="HOST:PORT",
    help="Serve the status board here (default: the config's `web:`, else 127.0.0.1:8642; port 0: any free one).",
)
@click.option("--no-web", "no_web", is_flag=True, help="Do not serve the status board.")
def command(
    config_path: str | None,
    speed: float | None,
    max_seconds: float | None,
    plain: bool,
    new_state: bool,
    web: str | None,
    no_web: bool,
) -> None:
    """Follow the account(s), evaluate every policy on every event and each second, enforce."""
    from riskc.engine.daemon.config import (
        ConfigError,
        CredentialsError,
        credentials_from_env,
        find_config,
        load_config,
        login_credentials,
    )

    try:
        found = find_config(config_path)
        config = load_config(found) if found is not None else None
        if config is not None and config.logins and config.broker.needs_credentials:
            credentials = login_credentials(config)  # every login's, from the variables it names
        else:
            credentials = credentials_from_env()
    except (ConfigError, CredentialsError) as error:
        echo_err(f"error: {error}")
        raise SystemExit(EXIT_USAGE) from None
    demo = config is None
    if demo:
        if credentials is not None:
            echo_err(
                "error: broker credentials are set but there is no riskc.yaml: write one (docs/config.md) "
                "naming the account and its policies, or unset PROJECT_X_USERNAME/PROJECT_X_API_KEY for the demo"
            )
            raise SystemExit(EXIT_USAGE)
        config = _demo_config(speed)
    elif speed is not None:
        config = config.model_copy(update={"broker": config.broker.model_copy(update={"speed": speed})})
    if web is not None or no_web:
        config = config.model_copy(update={"web": _web_option(config.web, web, no_web)})
    if config.broker.needs_credentials and credentials is None:
        echo_err(
            f"error: the {config.broker.kind} broker needs PROJECT_X_USERNAME and PROJECT_X_API_KEY in the environment"
        )
        raise SystemExit(EXIT_USAGE)
    raise SystemExit(
        _run(
            config,
            credentials,
            demo=demo,
            max_seconds=max_seconds,
            plain=plain or not sys.stdout.isatty(),
            new_state=new_state,
        )
    )


def _web_option(current, address: str | None, off: bool):
    """``--no-web``, or ``--web HOST:PORT`` (``[::1]:8642`` for IPv6) over the config's `web:`;
    the config's token still applies. A non-loopback host without a token is refused here too."""
    from pydantic import ValidationError

    from riskc.engine.daemon.config import WebConfig

    if off:
        if address is not None:
            raise click.UsageError("give --web HOST:PORT or --no-web, not both")
        return current.model_copy(update={"enabled": False})
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise click.UsageError(f"--web {address}: expected HOST:PORT, e.g. 127.0.0.1:8642")
    try:
        return WebConfig.model_validate(
            {"enabled": True, "host": host.strip("[]"), "port": int(port), "token": current.token}
        )
    except ValidationError as error:
        message = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
        echo_err(f"error: --web {address}: {message}")
        raise SystemExit(EXIT_USAGE) from None


def _demo_config(speed: float | None):
    from riskc.engine.daemon.config import Config

    config = Config.default_demo()
    _fresh(config.state)
    recording = config.broker.recording
    if not recording.is_file():
        echo_err(f"error: the demo recording {recording} is missing (riskc's package data: reinstall riskc)")
        raise SystemExit(EXIT_FAILED)
    if speed is None:
        speed = max(1.0, _recorded_seconds(recording) / DEMO_SECONDS)
    return config.model_copy(update={"broker": config.broker.model_copy(update={"speed": speed})})


def _fresh(state) -> None:
    """The demo starts from a clean state each time (its own file, never a live account's)."""
    for suffix in ("", "-wal", "-shm"):
        path = state.with_name(state.name + suffix)
        if path.exists():
            path.unlink()


def _recorded_seconds(recording) -> float:
    from riskc.engine.adapters.projectx.intake import Message, read_recording

    times = [m.ts for m in read_recording(str(recording)) if type(m) is Message]
    return (max(times) - min(times)).total_seconds() if times else 0.0


def _run(config, credentials, *, demo: bool, max_seconds: float | None, plain: bool, new_state: bool = False) -> int:
    from riskc.engine.daemon.board.server import serve_board
    from riskc.engine.daemon.console import make_console
    from riskc.engine.daemon.daemon import Daemon
    from riskc.engine.daemon.heartbeat import keep_alive
    from riskc.engine.daemon.live_view import run_view
    from riskc.engine.daemon.loops import PolicyLoadError, build_loops
    from riskc.engine.daemon.reload import watch_and_reload
    from riskc.engine.store import StoreError

    console = make_console()
    if demo:
        console.print(
            f"[bold]riskc demo[/bold]: no credentials and no riskc.yaml, so the simulated broker plays "
            f"{config.broker.recording.name} at {config.broker.speed:.0f}× against "
            f"{config.accounts[0].policies[0].name}. Ctrl-C stops it."
        )
    try:
        daemon = Daemon(
            config, console=console, live_view=not plain, max_seconds=max_seconds, demo=demo, new_state=new_state
        )
    except StoreError as error:  # an unusable state file, an unreachable desk
        echo_err(f"error: {error}")
        return EXIT_USAGE
    except OSError as error:
        echo_err(f"error: cannot use the state file {config.state}: {error.strerror or error}")
        return EXIT_USAGE
    try:
        services = (serve_board, keep_alive, watch_and_reload) + (() if plain else (run_view,))
        code = asyncio.run(daemon.run(lambda d: build_loops(d, credentials), services))
    except PolicyLoadError as error:
        echo_err(str(error))
        return EXIT_FAILED
    except Exception as error:  # a refused login, no such account; stopped while connecting
        from riskc.engine.adapters.projectx.sdk import ConnectError
        from riskc.engine.daemon.live import StoppedWhileConnecting

        if isinstance(error, StoppedWhileConnecting):
            echo_err(f"riskc: {error}")
            return EXIT_OK
        if isinstance(error, ConnectError):
            echo_err(f"error: {error}")
            return EXIT_FAILED
        raise
    _summary(console, daemon, demo)
    return code


def _summary(console, daemon, demo: bool) -> None:
    total = sum(lp.activity.calls for lp in daemon.loops)
    actions = sum(len(lp.activity.actions) for lp in daemon.loops)
    # The feed's messages, as `riskc replay` counts a recording's (the broker's answers are not among them).
    messages = sum(lp.activity.feed_messages for lp in daemon.loops)
    console.print(f"stopped: {messages:,} messages, {total:,} broker calls; state in {daemon.config.state}")
    if demo:
        console.print(
            f"see what it left behind: [bold]riskc status --state {daemon.config.state}[/bold]"
            + ("" if actions else "  (no rule acted)")
        )
