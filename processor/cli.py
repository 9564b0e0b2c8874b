"""The ``lookout`` command."""

from __future__ import annotations

import argparse
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lookout", description="Edge video analytics for people.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="process the configured cameras")
    run.add_argument("--config", default="config-x86.ini", help="INI file (default: %(default)s)")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--no-progress", action="store_true", help="do not show the progress line")
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("--config", default="config-x86.ini")
    check.set_defaults(func=_cmd_check_config)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
