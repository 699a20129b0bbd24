"""`riskc init [POLICY]`: start a working folder from a ready-made policy (PRODUCT.md §1, §5).

It writes a commented `riskc.yaml` (the simulated broker on the bundled demo session, so
`riskc run` works at once; the comments say how to follow a real account), copies the policy and
its tests from riskc's package data (``riskc.policies``) into ``policies/``, the demo session into
``sessions/``, and prints the next three commands. It never overwrites a file (``--force`` does).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from riskc.engine.cli.common import EXIT_USAGE, echo_err

DEFAULT_POLICY = "topstep-50k"

CONFIG_TEMPLATE = """\
# riskc.yaml: how `riskc run` follows your account (docs/config.md describes every key).
# Written by `riskc init {policy}`. Relative paths are relative to this file.
#
# As written, `riskc run` plays the bundled demo session against your policy with the simulated
# broker: nothing reaches a real account. To follow your account:
#   1. export PROJECT_X_USERNAME and PROJECT_X_API_KEY (never write them here), and
#      PROJECT_X_ACCOUNT_NAME if you have several accounts;
#   2. set `kind: dry-run` below (riskc decides and logs every action, and sends nothing),
#      remove `recording:` and `speed:`, and watch it for a session or two;
#   3. then `kind: projectx`, to enforce.

state: riskc-state.db         # lockouts, timers, day ledger, audit log (SQLite); `riskc status` reads it
log: riskc-log.jsonl          # alerts and daemon events, one JSON object a line

broker:
  kind: sim                   # sim: play a recording | dry-run: follow live, send nothing | projectx: enforce
  recording: sessions/demo.jsonl
  speed: 10                   # recorded seconds per wall second (sim only)
  # timeout: 5s               # per broker call (dry-run, projectx)
  # retries: 3                # of a call that did not take effect (verified against the broker first)

# reconcile_every: 30s        # re-read positions, orders and trades from the broker's REST API

accounts:
  - policies: [policies/{policy}.risk]   # files or folders of *.risk
    # name: 50KTC-V2-1234567              # or `id: 13298777`; leave both out for the only account

alerts:
  console: true
  # webhooks:                           # the URL holds a token: keep it in the environment
  #   - url: ${{RISKC_DISCORD_WEBHOOK}}
  #     format: discord                 # discord | json
  #     min_severity: high              # info | low | medium | high | critical

# web: {{port: 8642}}             # the status board at http://127.0.0.1:8642/ (`web: false`: none)
# heartbeat: {{every: 5s}}        # add `url:` to ping an outside monitor (healthchecks.io)
# edits: next_trading_day       # a policy edit takes effect at the next trading-day start
"""


def ready_made() -> dict[str, str]:
    """Name -> first comment line (what it is), of every ready-made policy in the package data."""
    folder = resources.files("riskc.policies")
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".risk"):
            found[entry.name.removesuffix(".risk")] = _title(entry.read_text(encoding="utf-8"))
    return found


def _title(source: str) -> str:
    for line in source.splitlines():
        if line.startswith("policy "):
            return line.removeprefix("policy ").strip().strip('"')
    return ""


@click.command("init")
@click.argument("policy", required=False, default=DEFAULT_POLICY)
@click.option("--list", "list_only", is_flag=True, help="List the ready-made policies and exit.")
@click.option("--force", is_flag=True, help="Overwrite files that exist already.")
def command(policy: str, list_only: bool, force: bool) -> None:
    """Start here: write a commented riskc.yaml and copy a ready-made POLICY (default
    topstep-50k) with its tests and the demo session into the current directory."""
    policies = ready_made()
    if list_only:
        width = max(map(len, policies))
        for name, title in policies.items():
            click.echo(f"{name:<{width}}  {title}" + ("  (default)" if name == DEFAULT_POLICY else ""))
        return
    name = policy.removesuffix(".risk")
    if name not in policies:
        echo_err(f"error: no ready-made policy `{policy}`; there are: {', '.join(policies)} (riskc init --list)")
        raise SystemExit(EXIT_USAGE)
    files = _files(name)
    existing = [target for target in files if target.exists()]
    if existing and not force:
        echo_err(
            "error: these files exist already, and riskc init does not overwrite: "
            + ", ".join(str(p) for p in existing)
            + " (--force overwrites them)"
        )
        raise SystemExit(EXIT_USAGE)
    for target, text in files.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        click.echo(f"wrote {target}")
    click.echo(
        "\nNext:\n"
        f"  riskc check policies/                 # prints nothing when the policy is good\n"
        f"  riskc test policies/                  # the policy's tests, from policies/tests/{name}.yaml\n"
        f"  riskc replay sessions/demo.jsonl --policy policies/   # what it would have done in a session\n"
        "Then `riskc run` plays that session live (riskc.yaml says how to follow your account)."
    )


def _files(name: str) -> dict[Path, str]:
    package = resources.files("riskc.policies")
    out = {
        Path("riskc.yaml"): CONFIG_TEMPLATE.format(policy=name),
        Path("policies") / f"{name}.risk": (package / f"{name}.risk").read_text(encoding="utf-8"),
    }
    tests = package / "tests" / f"{name}.yaml"
    if tests.is_file():
        out[Path("policies") / "tests" / f"{name}.yaml"] = tests.read_text(encoding="utf-8")
    demo = resources.files("riskc.engine.sim") / "demo.jsonl"
    out[Path("sessions") / "demo.jsonl"] = demo.read_text(encoding="utf-8")
    return out
