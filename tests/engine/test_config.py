"""riskc.yaml: a good file, every kind of mistake reported at its line, ${VAR} expansion,
finding the file, and credentials that never show the key."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from riskc.engine.daemon.config import (
    DEMO_POLICY,
    DEMO_RECORDING,
    Config,
    ConfigError,
    Credentials,
    CredentialsError,
    credentials_from_env,
    find_config,
    load_config,
    policy_files,
    redact_url,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "mine.risk").write_text("use daily_loss(limit: $500)\n")
    (tmp_path / "sessions").mkdir()
    (tmp_path / "sessions" / "day.jsonl").write_text("")
    return tmp_path


def write(home: Path, text: str) -> Path:
    path = home / "riskc.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def errors(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return str(caught.value).splitlines()


def test_the_example_config_loads() -> None:
    config = load_config(
        REPO / "examples" / "riskc.yaml", {"RISKC_DISCORD_WEBHOOK": "https://discord.com/api/webhooks/1/t"}
    )
    assert config.broker.kind == "dry-run"
    assert config.accounts[0].policies == [REPO / "examples" / ".." / "policies" / "topstep-50k.risk"]


def test_a_full_config(home: Path) -> None:
    path = write(
        home,
        """
        state: state/riskc.db
        log: ~/riskc.log.jsonl
        broker:
          kind: sim
          recording: sessions/day.jsonl
          speed: 0
          timeout: 2s
          retries: 5
        reconcile_every: 1m
        accounts:
          - name: 50KTC-V2-1234567
            policies: [policies/mine.risk]
          - id: 13298777
            policies: policies
        alerts:
          console: false
          webhooks:
            - url: https://discord.com/api/webhooks/${HOOK_ID}/${HOOK_TOKEN}
              format: discord
              min_severity: high
    """,
    )
    config = load_config(path, {"HOOK_ID": "42", "HOOK_TOKEN": "tok"})
    assert config.state == home / "state" / "riskc.db"
    assert config.log == Path("~/riskc.log.jsonl").expanduser()
    assert (config.broker.kind, config.broker.speed, config.broker.retries) == ("sim", 0, 5)
    assert config.broker.recording == home / "sessions" / "day.jsonl"
    assert config.broker.timeout == dt.timedelta(seconds=2)
    assert config.reconcile_every == dt.timedelta(minutes=1)
    assert config.accounts[0].policies == [home / "policies" / "mine.risk"]
    assert config.accounts[1].policies == [home / "policies"]  # one path may be written bare
    assert config.alerts.webhooks[0].url == "https://discord.com/api/webhooks/42/tok"
    assert config.alerts.webhooks[0].min_severity == "high" and not config.alerts.console
    assert config.account("13298777") is config.accounts[1] and config.account("50KTC-V2-1234567") is config.accounts[0]
    assert config.source == path
    assert policy_files(config.accounts[1]) == [home / "policies" / "mine.risk"]


def test_defaults(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "xdg"))
    config = load_config(write(home, "accounts:\n  - policies: [policies]\n"), {})
    assert config.state == home / "xdg" / "riskc" / "state.db"
    assert config.log == home / "xdg" / "riskc" / "riskc.log.jsonl"
    assert (config.broker.kind, config.broker.timeout, config.broker.retries) == (
        "projectx",
        dt.timedelta(seconds=15),
        3,
    )
    assert config.reconcile_every == dt.timedelta(seconds=30)
    assert config.alerts.console and config.alerts.webhooks == []


@pytest.mark.parametrize("kind", ["dry-run", "sim"])
def test_a_dry_run_or_a_simulation_keeps_its_own_state_by_default(
    home: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A dry-run lockout in the live daemon's state.db would flatten tomorrow's live account."""
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "xdg"))
    (home / "rec.jsonl").write_text("")
    extra = "  recording: rec.jsonl\n" if kind == "sim" else ""
    config = load_config(write(home, f"accounts:\n  - policies: [policies]\nbroker:\n  kind: {kind}\n{extra}"), {})
    assert config.state == home / "xdg" / "riskc" / f"{kind}.db"
    assert config.log == home / "xdg" / "riskc" / f"{kind}.log.jsonl"
    explicit = load_config(
        write(home, f"state: s.db\naccounts:\n  - policies: [policies]\nbroker:\n  kind: {kind}\n{extra}"), {}
    )
    assert explicit.state == home / "s.db"  # what the file says wins


def test_the_demo_config_does_not_need_its_recording(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    demo = Config.default_demo()
    assert demo.broker.kind == "sim" and demo.broker.recording == DEMO_RECORDING
    assert demo.accounts[0].policies == [DEMO_POLICY] and DEMO_POLICY.is_file()
    assert demo.state == tmp_path / "riskc" / "demo.db"  # never the live daemon's state file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "accounts:\n  - policies: [policies]\nbroker:\n  kind: live\n",
            "riskc.yaml:4:9: broker.kind: Input should be 'projectx', 'sim' or 'dry-run'",
        ),
        (
            "accounts:\n  - policies: [policies]\nreconcile_every: soon\n",
            "riskc.yaml:3:18: reconcile_every: 'soon' is not a duration like 30s, 15m or 1h30m",
        ),
        (
            "accounts:\n  - policies: [policies]\nreconcile_every: 0s\n",
            "riskc.yaml:3:18: reconcile_every: '0s' must be longer than zero",
        ),
        (
            "accounts:\n  - policies: [policies]\nbroker:\n  retries: -1\n",
            "riskc.yaml:4:12: broker.retries: Input should be greater than or equal to 0",
        ),
        (
            "accounts:\n  - policies: [policies]\nbrokr:\n  kind: sim\n",
            "riskc.yaml:3:1: unknown key `brokr`; did you mean `broker`?",
        ),
        (
            "accounts:\n  - policies: [policies]\n    polcy: 3\n",
            "riskc.yaml:3:5: unknown key `polcy`; did you mean `policies`?",
        ),
        ("accounts:\n  - name: x\n", "riskc.yaml:2:5: missing key `policies` in accounts[0]"),
        ("state: x.db\n", "riskc.yaml:1:1: missing key `accounts`"),
        ("accounts: []\n", "riskc.yaml:1:1: accounts: needs at least one entry"),
        (
            "accounts:\n  - id: twelve\n    policies: [policies]\n",
            "riskc.yaml:2:9: accounts[0].id: expected a whole number",
        ),
        (
            "accounts:\n  - id: 1\n    policies: [policies]\n  - id: 1\n    policies: [policies]\n",
            "riskc.yaml:4:9: account id 1 is listed twice",
        ),
        (
            "accounts:\n  - policies: [policies]\n  - policies: [policies]\n",
            "riskc.yaml:3:5: only one account may leave out both `name` and `id`",
        ),
        (
            "broker: projectx\naccounts:\n  - policies: [policies]\n",
            "riskc.yaml:1:9: broker: expected a mapping (`key: value` lines)",
        ),
        (
            "broker:\n  kind: sim\naccounts:\n  - policies: [policies]\n",
            "riskc.yaml:1:1: broker: a `sim` broker needs `recording:` (the session to play)",
        ),
        (
            "broker:\n  recording: sessions/day.jsonl\naccounts:\n  - policies: [policies]\n",
            "riskc.yaml:1:1: broker: `recording:` only applies to the `sim` broker, not `projectx`",
        ),
        (
            "accounts:\n  - policies: [policies/missing.risk]\n",
            "riskc.yaml:2:16: no such policy file or directory: {home}/policies/missing.risk",
        ),
        (
            "accounts:\n  - policies: [policies]\nalerts:\n  webhooks:\n    - url: ftp://host/secret-token\n",
            "riskc.yaml:5:12: alerts.webhooks[0].url: webhook url must start with http:// or https:// (got ftp://host/…)",
        ),
        (
            "accounts:\n  - policies: [policies\n",
            "riskc.yaml:3:1: not valid YAML: expected ',' or ']', but got '<stream end>'",
        ),
        (
            "accounts:\n\t- policies: [policies]\n",
            "riskc.yaml:2:1: not valid YAML: found character '\\t' that cannot start any token",
        ),
        ("- a\n- b\n", "riskc.yaml:1:1: the config file must be a mapping of keys (state:, broker:, accounts:, ...)"),
        ("", "riskc.yaml:1:1: the config file is empty; it needs at least `accounts:`"),
    ],
)
def test_each_mistake_is_reported_at_its_line(
    home: Path, text: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(home)
    write(home, text)
    assert errors(Path("riskc.yaml")) == [expected.replace("{home}", str(home))]


def test_all_mistakes_are_reported_in_order(home: Path) -> None:
    path = write(
        home,
        """
        broker:
          timeout: fast
          speed: -1
        accounts:
          - policies: [policies]
            nickname: main
    """,
    )
    found = errors(path)
    assert [line.split(": ", 1)[0].rsplit(":", 2)[-2] for line in found] == ["2", "3", "6"]
    assert not any("Traceback" in line for line in found)


def test_env_expansion_names_the_unset_variable_and_never_the_value(home: Path) -> None:
    path = write(
        home,
        """
        accounts:
          - policies: [policies]
        alerts:
          webhooks:
            - url: ${DISCORD_WEBHOOK}
            - url: https://example.com/${ALSO_MISSING}
    """,
    )
    assert errors(path, {"UNRELATED": "x"}) == [
        f"{path}:5:12: environment variable DISCORD_WEBHOOK is not set",
        f"{path}:6:12: environment variable ALSO_MISSING is not set",
    ]


def test_a_missing_file() -> None:
    with pytest.raises(ConfigError, match="nowhere.yaml: no such config file"):
        load_config("nowhere.yaml")


def test_find_config_order(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("")
    local = write(home, "")
    assert find_config(str(other), {"RISKC_CONFIG": str(local)}, cwd=home) == other
    assert find_config(None, {"RISKC_CONFIG": str(other)}, cwd=home) == other
    assert find_config(None, {}, cwd=home) == local
    assert find_config(None, {}, cwd=home / "policies") is None
    with pytest.raises(ConfigError, match="no such config file \\(from --config\\)"):
        find_config(str(tmp_path / "absent.yaml"), {}, cwd=home)
    with pytest.raises(ConfigError, match="from \\$RISKC_CONFIG"):
        find_config(None, {"RISKC_CONFIG": str(tmp_path / "absent.yaml")}, cwd=home)


# -- credentials ---------------------------------------------------------------------------


def test_credentials_from_env() -> None:
    assert credentials_from_env({}) is None
    creds = credentials_from_env(
        {"PROJECT_X_USERNAME": "trader", "PROJECT_X_API_KEY": "k3y-s3cret", "PROJECT_X_ACCOUNT_NAME": "50KTC"}
    )
    assert creds == Credentials("trader", "k3y-s3cret", "50KTC")
    assert "k3y-s3cret" not in repr(creds) and "k3y-s3cret" not in str(creds) and "***" in repr(creds)
    assert "k3y-s3cret" not in f"{[creds]}"


@pytest.mark.parametrize("environ", [{"PROJECT_X_API_KEY": "k3y-s3cret"}, {"PROJECT_X_USERNAME": "trader"}])
def test_half_set_credentials_are_an_error_that_shows_no_value(environ: dict[str, str]) -> None:
    with pytest.raises(CredentialsError) as caught:
        credentials_from_env(environ)
    assert "is set but" in str(caught.value) and "k3y-s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://discord.com/api/webhooks/123/AbC-token", "https://discord.com/…"),
        ("https://user:pw@hooks.example.com:8443/x?token=1", "https://hooks.example.com:8443/…"),
        ("not a url", "<url>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_example_config_loads_as_shipped_without_any_environment():
    """examples/riskc.yaml is what a new user copies: it must load with nothing exported (its
    webhook is commented out until RISKC_DISCORD_WEBHOOK is)."""
    example = Path(__file__).resolve().parents[2] / "examples" / "riskc.yaml"
    config = load_config(example, environ={})
    assert config.alerts.webhooks == [] and config.broker.kind == "dry-run"
    assert "${RISKC_DISCORD_WEBHOOK}" in example.read_text()  # still shown, as a comment


def test_instrument_overrides_and_stale_after(home: Path) -> None:
    from decimal import Decimal

    path = write(
        home,
        """
        stale_after: 20s
        broker:
          stop_move_interval: 5s
        instruments:
          CPE: {tick_size: 0.0005, tick_value: 12.50, name: Copper}
        accounts:
          - policies: [policies]
    """,
    )
    config = load_config(path, {})
    assert config.stale_after == dt.timedelta(seconds=20)
    assert config.broker.stop_move_interval == dt.timedelta(seconds=5)
    spec = config.instrument_overrides()["CPE"]
    assert (spec.tick_size, spec.tick_value, spec.name) == (Decimal("0.0005"), Decimal("12.50"), "Copper")


def test_an_instrument_override_must_have_positive_ticks(home: Path) -> None:
    path = write(
        home,
        """
        instruments:
          CPE: {tick_size: 0, tick_value: 12.50}
        accounts:
          - policies: [policies]
    """,
    )
    found = errors(path)
    assert len(found) == 1 and "instruments.CPE.tick_size" in found[0] and "Traceback" not in found[0]
