"""The `riskc` command line. Each verb lives in its own module under ``engine/cli``; this
module only assembles the group, so `riskc check` imports nothing it does not need."""

from __future__ import annotations

import click

from riskc.engine.cli.commands import register_all


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="riskc")
def main() -> None:
    """riskc: risk policies as code for futures traders on the ProjectX Gateway."""


register_all(main)
