"""`yolo-operator`: run the controller on a cluster, run a manifest locally, or write the CRDs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolo-operator", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    crds = sub.add_parser("crds", help="write the CRDs generated from the API models")
    crds.add_argument("--out", default="crds", help="folder to write into (default: crds)")
    crds.add_argument("--check", action="store_true", help="fail if the folder differs from the models")
    from yolo_operator.local import cli as local_cli

    run = sub.add_parser("run", help="run a YoloTrainJob or YoloInferenceService on this machine, no cluster")
    local_cli.add_arguments(run)
    controller = sub.add_parser(
        "controller", help="run the controllers against a cluster (settings from YOLO_OPERATOR_* variables)"
    )
    controller.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster service account, then ~/.kube)")
    return parser


def skip_client_side_validation() -> None:
    """Keep kubernetes-validate out of the controller process.

    The kubernetes client's `dynamic` package, which Kopf's import pulls in, imports kubernetes-validate when it is
    installed (the dev environment has it for the manifest tests), and through jsonschema that imports
    rfc3987-syntax, which builds a grammar at import: 5 of the 7.8 s `import yolo_operator.main` took on the
    two-core machine (2.5 s without it; the operator image, which has neither, imports in 1 s). The controller
    never uses the dynamic client or its client-side validation.
    """
    sys.modules.setdefault("kubernetes_validate", None)  # type: ignore[arg-type]  # None: "not importable"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "crds":
        from yolo_operator.crdgen import write_crds

        return write_crds(args.out, check=args.check)
    if args.command == "run":
        from yolo_operator.local import cli as local_cli

        return local_cli.run(args)
    if args.command == "controller":
        skip_client_side_validation()
        from yolo_operator.main import run as run_controller
        from yolo_operator.settings import SettingsError, load_settings

        try:
            settings = load_settings()
        except SettingsError as exc:
            print(f"yolo-operator: {exc}", file=sys.stderr)
            return 2
        return run_controller(settings, args.kubeconfig)
    return 2


if __name__ == "__main__":
    sys.exit(main())
