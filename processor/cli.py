"""The ``lookout`` command."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence


def _cmd_run(args: argparse.Namespace) -> int:
    from libs.config import ConfigError
    from processor import supervisor

    try:
        return supervisor.run(args.config, log_level=args.log_level,
                              show_progress=not args.no_progress)
    except ConfigError as exc:
        print(f"lookout: invalid configuration:\n{exc}", file=sys.stderr)
        return 2


def _cmd_check_config(args: argparse.Namespace) -> int:
    from libs.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"lookout: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    print(f"{args.config}: valid")
    print(f"  data directory:   {cfg.data_dir}")
    print(f"  assets directory: {cfg.assets_dir}")
    print(f"  detector:         {cfg.detector.device} / {cfg.detector.name}")
    print(f"  tracker:          {cfg.tracker.name}")
    from libs.calibration import CalibrationError, FloorCalibration

    for s in cfg.sources:
        print(f"  camera {s.id}: {s.video_path}{'' if s.enabled else ' (disabled)'}")
        if s.calibration_image_points:
            try:
                cal = FloorCalibration.from_points(
                    s.calibration_image_points, s.calibration_floor_points
                )
            except CalibrationError as exc:
                print(f"    calibration unusable: {exc}")
            else:
                print(
                    f"    calibration: {len(s.calibration_image_points)} points, reprojection "
                    f"error {cal.reprojection_error_m:.3f} m RMS, {cal.max_error_m:.3f} m max"
                )
    for a in cfg.areas:
        print(f"  area {a.id}: cameras {', '.join(a.cameras)}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from libs.config import ConfigError, load_config
    from libs.evaluation.evaluate import (
        evaluate_sequence,
        parse_line,
        render_markdown,
        write_results,
    )
    from libs.evaluation.tracking import load_sequence

    try:
        config = load_config(args.config, check_files=False)
        lines = [parse_line(text) for text in args.line]
        sequences = [load_sequence(p) for p in args.sequences]
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"lookout evaluate: {exc}", file=sys.stderr)
        return 2
    results = []
    for seq in sequences:
        print(f"evaluating {seq.name} ({seq.length} frames, {args.detections})...",
              file=sys.stderr, flush=True)
        results.append(evaluate_sequence(
            seq, config, detections=args.detections, tracker_name=args.tracker, lines=lines,
            camera=args.camera, min_score=args.min_score,
        ))
    print(render_markdown(results))
    command = "lookout " + shlex.join(args.argv)
    md, js = write_results(results, Path(args.output_dir), command)
    print(f"written: {md} and {js}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lookout", description="Edge video analytics for people.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="process the configured cameras")
    run.add_argument("--config", default="config-x86.ini", help="INI file (default: %(default)s)")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--no-progress", action="store_true", help="do not show the progress line")
    run.set_defaults(func=_cmd_run)

    ev = sub.add_parser(
        "evaluate",
        help="score the pipeline or a tracker on MOT-format sequences",
        description="Runs the real pipeline (or the tracker alone on given detections) on "
        "MOT-format sequence folders (seqinfo.ini, gt/gt.txt, frames as img1/ or a video, "
        "optional det/det.txt) and prints detection precision/recall, HOTA, MOTA, IDF1, ID "
        "switches, occupancy error, line-crossing counts and dwell error.",
    )
    ev.add_argument("sequences", nargs="+", help="sequence folders")
    ev.add_argument("--config", default="config-x86.ini",
                    help="detector, tracker and post-processor settings (default: %(default)s)")
    ev.add_argument("--detections", default="pipeline",
                    help="'pipeline' (run the detector), 'public' (the sequence's det/det.txt) "
                    "or a MOT detections file (default: %(default)s)")
    ev.add_argument("--tracker", default=None, help="tracker name (default: the config's)")
    ev.add_argument("--min-score", type=float, default=None,
                    help="detection score threshold (default: the config's MinScore for the "
                    "pipeline; all rows for given detections)")
    ev.add_argument("--line", action="append", default=[], metavar="NAME:X1,Y1,X2,Y2",
                    help="a counting line to score (repeatable)")
    ev.add_argument("--camera", default=None,
                    help="borrow ROI, calibration and lines of this configured camera")
    ev.add_argument("--output-dir", default="evaluation",
                    help="where evaluation.md and evaluation.json go (default: %(default)s)")
    ev.set_defaults(func=_cmd_evaluate)

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("--config", default="config-x86.ini")
    check.set_defaults(func=_cmd_check_config)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
