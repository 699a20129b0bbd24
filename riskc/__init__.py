"""riskc: risk policies as code for futures traders on the ProjectX Gateway.

The repository keeps its stages as top-level folders (``dsl/``, ``engine/``, ``stdlib_rules/``,
``policies/``); installed, they are the subpackages ``riskc.dsl``, ``riskc.engine``,
``riskc.stdlib_rules`` and ``riskc.policies`` (``pyproject.toml`` maps them), so a wheel puts one
name, ``riskc``, into site-packages."""
