"""`python -m diat_cli` runs the CLI (used by torchrun, which needs a module or a script)."""

from diat_cli.cli import app

if __name__ == "__main__":
    app()
