"""`yolo-workload fetch --config FILE`: bring every source of a FetchConfig into the cache before the workload.

Run by the operator as the init container `fetch` of a training, tuning or serving pod, and in-process by the local
runner. A failure names the spec field, the URI and the cause in the termination message, and exits 2 when the
source itself is wrong (the Job fails at once) or 1 when it may be transient (after `attempts` tries).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import yaml

from yolo_workloads.contract import SOURCE_ERROR_EXIT_CODE, FetchConfig, FetchSource
from yolo_workloads.fetch.remote import SourceError
from yolo_workloads.fetch.store import fetch


class FetchFailed(Exception):
    """A source could not be fetched; the message names the field, the URI and the cause."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="path of the FetchConfig (YAML or JSON)")


def fetch_one(source: FetchSource, config: FetchConfig, sleep: float = 1.0) -> Path:
    """One source, tried again after transient failures (unreachable, truncated, 5xx) up to `attempts` times."""
    for attempt in range(1, config.attempts + 1):
        try:
            return fetch(source, Path(config.cache_dir), config.timeout_seconds)
        except SourceError as exc:
            tries = f" (after {attempt} tries)" if attempt > 1 else ""
            if exc.permanent or attempt == config.attempts:
                raise FetchFailed(f"{source.field} ({source.uri}): {exc.cause}{tries}", exc.permanent) from None
            print(f"{source.field}: {exc.cause}; trying again", file=sys.stderr)
            time.sleep(sleep * attempt)
    raise AssertionError("unreachable")


def fetch_all(config: FetchConfig, sleep: float = 1.0) -> list[Path]:
    return [fetch_one(source, config, sleep) for source in config.sources]


def run(args: argparse.Namespace) -> int:
    with open(args.config) as f:
        config = FetchConfig.model_validate(yaml.safe_load(f))
    try:
        for source in config.sources:
            target = fetch_one(source, config)
            print(f"{source.field}: {source.uri} -> {target}", file=sys.stderr)
    except FetchFailed as exc:
        message = str(exc)[:3900]
        print(message, file=sys.stderr)
        with contextlib.suppress(OSError):  # outside a pod the path may not be writable
            Path(config.termination_log).write_text(message)
        return SOURCE_ERROR_EXIT_CODE if exc.permanent else 1
    return 0
