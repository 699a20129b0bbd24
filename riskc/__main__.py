"""``python -m riskc``: the command line."""

from riskc.engine.cli.main import main

main()
