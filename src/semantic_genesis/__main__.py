"""``python -m semantic_genesis`` (also what ``torchrun -m semantic_genesis`` runs)."""

from semantic_genesis.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
