"""``vcups export``: checkpoint -> ONNX (+ parity check) and optionally a TensorRT engine.

    vcups export --checkpoint model.pt --onnx model.onnx [--tensorrt model.engine] [--fp16]
                 [--height 512 --width 1024]

Exit codes: 0 exported and parity passed; 1 parity check failed (the ONNX file is still
written); 2 TensorRT requested but unavailable or failing, or the checkpoint cannot be read
(through ``vcups``: also an unusable option or output path, refused before any work).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``vcups export`` options to ``parser``."""
    parser.add_argument("--checkpoint", required=True, help="vcups checkpoint (.pt)")
    parser.add_argument("--onnx", required=True, help="output ONNX file")
    parser.add_argument("--tensorrt", default="", help="also build this TensorRT engine")
    parser.add_argument("--fp16", action="store_true", help="FP16 TensorRT engine")
    parser.add_argument(
        "--height", type=int, default=512, help="example/optimal input height (default 512)"
    )
    parser.add_argument(
        "--width", type=int, default=1024, help="example/optimal input width (default 1024)"
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the parity-check images")


def run_export(args: argparse.Namespace) -> int:
    """Export a checkpoint; print the parity report; see the module docstring for exit codes."""
    from vcups_core.export.onnx import check_export_options, check_onnx_parity, export_onnx
    from vcups_core.jobs import check_output_file
    from vcups_core.model.checkpoint import load_checkpoint

    height, width = int(args.height), int(args.width)
    opset = int(getattr(args, "opset", 17))
    # the options and outputs are checked before the checkpoint is read or anything exported
    check_export_options(opset, (height, width))
    check_output_file(args.onnx, "--onnx")
    if args.tensorrt:
        check_output_file(args.tensorrt, "--tensorrt")
    try:
        model, meta = load_checkpoint(args.checkpoint)
    except (ValueError, FileNotFoundError) as exc:
        print(f"vcups export: {exc}", file=sys.stderr)
        return 2
    onnx_path = export_onnx(model, args.onnx, opset=opset, example_size=(height, width))
    print(f"wrote {onnx_path} ({meta['model_name']}, weights sha256 {meta['weights_sha256'][:12]})")
    rng = np.random.default_rng(int(getattr(args, "seed", 0)))
    # Two sizes: the export size and a different one, so a graph that lost its dynamic axes fails.
    sizes = [(height, width), (max(32, height * 3 // 4), max(32, width * 5 // 8))]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    report = check_onnx_parity(model, onnx_path, images)
    print(report)
    status = 0 if report.ok else 1
    if args.tensorrt:
        from vcups_core.export.tensorrt import build_engine

        try:
            engine = build_engine(
                onnx_path,
                args.tensorrt,
                fp16=bool(args.fp16),
                min_shape=(min(256, height), min(256, width)),
                opt_shape=(height, width),
                max_shape=(max(height, 1024), max(width, 2048)),
            )
        except (ImportError, RuntimeError) as exc:
            print(f"vcups export: TensorRT engine not built: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {engine}")
    return status


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m training.export``) until ``vcups export`` is wired."""
    parser = argparse.ArgumentParser(prog="vcups export", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_export(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
