"""CLI commands that live outside cli.py; each module registers its commands on `diat_cli.cli.app` when imported."""
