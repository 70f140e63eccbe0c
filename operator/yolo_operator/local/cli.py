"""`yolo-operator run FILE.yaml`: validate a manifest with the API models and run it on this machine.

Errors a user can fix (a manifest that does not validate, a work directory of another spec, an unmapped volume)
print `field.path: message` lines, the API server's wording, and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from yolo_operator.api import SpecError, YoloInferenceService, YoloTrainJob, parse_resource

EXIT_SPEC_ERROR = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="a YoloTrainJob or YoloInferenceService manifest (YAML)")
    parser.add_argument("--gpus", type=int, default=None, help="override spec.resources.gpus (0 runs on the CPU)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="work directory (default .work/<metadata.name>); run again to resume"
    )
    parser.add_argument(
        "--serve", action="store_true", help="YoloTrainJob: serve the trained weights and send them one request"
    )
    parser.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="CLAIM=DIR",
        help="a local folder standing in for a PersistentVolumeClaim the spec names (repeatable)",
    )
    parser.add_argument(
        "--train-workdir",
        type=Path,
        default=None,
        help="YoloInferenceService with fromTrainJob: the train job's work directory (default .work/<name>)",
    )


def load_manifest(path: Path, gpus: int | None) -> Any:
    """The validated resource; SpecError naming the file or field otherwise."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"{path}: not valid YAML: {exc}"]) from None
    if len(docs) != 1:
        raise SpecError([f"{path}: expected exactly one manifest, found {len(docs)}"])
    doc = docs[0]
    if gpus is not None:
        if gpus < 0:
            raise SpecError([f"--gpus: must be 0 or more, got {gpus}"])
        if isinstance(doc, dict) and isinstance(doc.get("spec"), dict):
            resources = doc["spec"].setdefault("resources", {}) or {}
            if isinstance(resources, dict):
                resources["gpus"] = gpus
                doc["spec"]["resources"] = resources
    return parse_resource(doc)


def run(args: argparse.Namespace) -> int:
    from yolo_operator.local.train_job import RunOptions
    from yolo_operator.local.workdir import parse_volumes

    try:
        resource = load_manifest(args.manifest, args.gpus)
        workdir = args.workdir or Path(".work") / resource.metadata.name
        options = RunOptions(workdir=workdir, serve=args.serve, volumes=parse_volumes(args.volume))
        if isinstance(resource, YoloTrainJob):
            from yolo_operator.local.train_job import TrainJobRunner

            return TrainJobRunner(resource, options).run()
        assert isinstance(resource, YoloInferenceService)
        if args.serve:
            raise SpecError(["--serve: only for a YoloTrainJob (a YoloInferenceService always serves)"])
        from yolo_operator.local.serve_run import run_inference_service

        return run_inference_service(resource, options, args.train_workdir)
    except KeyboardInterrupt:  # a second Ctrl-C: the children were already stopped on the way out
        return 130
    except SpecError as exc:
        print(f"{args.manifest}: invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_SPEC_ERROR
