"""`logins:` and the accounts' `login:` / `all:` in riskc.yaml (docs/config.md, "Logins and
`accounts: all`"): shapes, located errors, and credentials from the variables each login names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from riskc.engine.daemon.config import ConfigError, CredentialsError, load_config, login_credentials

LOGINS = """\
logins:
  - {name: main, username_env: PX_MAIN_USER, api_key_env: PX_MAIN_KEY}
  - {name: second, username_env: PX_2_USER, api_key_env: PX_2_KEY}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "p.risk").write_text('policy "p"\n\nuse max_contracts(limit: 1)\n')
    path = tmp_path / "riskc.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def issues(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return [f"{i.line}:{i.col}: {i.message}" for i in caught.value.issues]


def test_logins_and_accounts_naming_them(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            LOGINS
            + "accounts:\n  - {name: A, login: main, policies: p.risk}\n"
            + "  - {all: true, login: second, policies: p.risk}\n",
        )
    )
    assert [login.name for login in config.logins] == ["main", "second"]
    assert [config.login_of(a) for a in config.accounts] == ["main", "second"]
    assert config.lists_all and config.accounts[1].label == "every account of login second"


def test_the_short_form_of_all_and_one_login_by_default(tmp_path: Path) -> None:
    text = "logins: [{name: only, username_env: U, api_key_env: K}]\naccounts: {all: true, policies: p.risk}\n"
    config = load_config(write(tmp_path, text))
    (entry,) = config.accounts
    assert entry.all and config.login_of(entry) == "only"
    no_logins = load_config(write(tmp_path, "accounts: {all: true, policies: p.risk}\n"))
    assert no_logins.login_of(no_logins.accounts[0]) is None


def test_mistakes_are_located(tmp_path: Path) -> None:
    found = issues(
        tmp_path,
        LOGINS
        + "  - {name: main, username_env: 9BAD, api_key_env: K}\n"
        + "accounts:\n"
        + "  - {name: A, policies: p.risk}\n"
        + "  - {all: true, login: second, policies: p.risk}\n"
        + "  - {all: true, login: second, policies: p.risk}\n"
        + "  - {id: 7, login: nope, policies: p.risk}\n",
    )
    assert found == ["4:32: logins[2].username_env: '9BAD' is not an environment variable name (letters, digits, _)"]
    found = issues(
        tmp_path,
        LOGINS
        + "  - {name: main, username_env: X, api_key_env: K}\n"
        + "accounts:\n"
        + "  - {name: A, policies: p.risk}\n"
        + "  - {all: true, login: second, policies: p.risk}\n"
        + "  - {all: true, login: second, policies: p.risk}\n"
        + "  - {id: 7, login: nope, policies: p.risk}\n",
    )
    assert found == [
        "4:12: login `main` is listed twice",
        "6:5: name the account's `login:` (one of: main, second)",
        "8:11: `all: true` is given twice for every account of login second",
        "9:20: no login `nope` in `logins:` (known: main, second)",
    ]


def test_all_is_not_an_account_and_needs_a_live_broker(tmp_path: Path) -> None:
    assert issues(tmp_path, "accounts: all\n") == [
        "1:11: accounts: write `accounts: {all: true, policies: [...]}` (every account the logins can see)"
    ]
    assert issues(tmp_path, "accounts: [{all: true, name: A, policies: p.risk}]\n") == [
        "1:12: accounts[0]: `all: true` means every account of the login: leave out `name` and `id`"
    ]
    (tmp_path / "r.jsonl").write_text("")
    sim = "broker: {kind: sim, recording: r.jsonl}\naccounts: [{all: true, policies: p.risk}]\n"
    assert issues(tmp_path, sim) == ["2:18: `all: true` needs a live broker (projectx, dry-run) to list the accounts"]
    assert issues(tmp_path, "accounts: [{login: main, policies: p.risk}]\n") == [
        "1:20: login `main` is not defined: there is no `logins:` list"
    ]


def test_credentials_come_from_the_variables_each_login_names(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, LOGINS + "accounts: [{all: true, login: main, policies: p.risk}]\n"))
    environ = {"PX_MAIN_USER": "me", "PX_MAIN_KEY": "key-1234567890", "PX_2_USER": "two", "PX_2_KEY": "key-2"}
    found = login_credentials(config, environ)
    assert (found["main"].username, found["main"].api_key, found["second"].api_key) == ("me", "key-1234567890", "key-2")
    assert found["main"].source == "PX_MAIN_USER and PX_MAIN_KEY" and "key-1234567890" not in repr(found["main"])
    with pytest.raises(CredentialsError) as missing:
        login_credentials(config, {**environ, "PX_2_KEY": " ", "PX_MAIN_USER": ""})
    message = str(missing.value)
    assert "PX_MAIN_USER (logins[0].username_env, login `main`)" in message
    assert "PX_2_KEY (logins[1].api_key_env, login `second`)" in message
    assert "key-1234567890" not in message and "key-2" not in message
