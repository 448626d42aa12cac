"""One module per CLI subcommand (see :mod:`semantic_genesis.cli` for the protocol)."""
