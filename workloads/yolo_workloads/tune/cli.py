"""Command-line entry of this verb (placeholder until implemented)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="path of the contract config (YAML or JSON)")


def run(args: argparse.Namespace) -> int:
    raise SystemExit("not implemented yet")
