"""The broker boundary (PRODUCT.md §2, §8): ``BrokerPort`` and its implementations (``projectx``,
``sim``, ``dry-run``). Only ``projectx`` imports the SDK."""
