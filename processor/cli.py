"""The ``lookout`` command."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig


def _cmd_run(args: argparse.Namespace) -> int:
    from libs.config import ConfigError, load_config
    from processor import supervisor
    from processor.runlock import AlreadyRunningError

    try:
        config = load_config(args.config)
        for warning in config.warnings:
            print(f"lookout: warning: {warning}", file=sys.stderr)
        problem = _device_problem(config)
        if problem is not None:
            print(f"lookout: invalid configuration:\n{problem}", file=sys.stderr)
            return 2
        if args.no_api or not config.api.enabled:
            return supervisor.run(args.config, log_level=args.log_level,
                                  show_progress=not args.no_progress)
        return _run_with_api(args)
    except ConfigError as exc:
        print(f"lookout: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, OSError, AlreadyRunningError) as exc:
        print(f"lookout: {exc}", file=sys.stderr)
        return 2


def _run_with_api(args: argparse.Namespace) -> int:
    """The processor on a background thread, the API server on this one."""
    import logging
    import signal
    import threading

    from api.server import build_server, url_of
    from processor.supervisor import Supervisor
    from processor.worker import setup_logging

    setup_logging(args.log_level)
    log = logging.getLogger("lookout")
    sup = Supervisor(args.config, log_level=args.log_level, show_progress=not args.no_progress,
                     exit_when_done=False)
    server = build_server(args.config, sup, args.log_level)
    thread = sup.run_in_thread()
    url = url_of(args.config)

    def announce_when_done() -> None:
        sup.all_done.wait()
        if not sup.exit_when_done:
            log.info("all recordings processed; the API is still serving at %s/docs "
                     "(Ctrl-C to stop)", url)

    def stop_api_with_processor() -> None:
        # The processor's loop ends by itself once every recording is done under
        # HistoricalDataMode = True: the API goes with it and the run exits.
        thread.join()
        if sup.ended_by_itself:
            server.should_exit = True

    threading.Thread(target=announce_when_done, daemon=True).start()
    threading.Thread(target=stop_api_with_processor, daemon=True).start()
    log.info("API at %s/docs; create a user with: lookout create-user --config %s NAME",
             url, args.config)

    def on_signal(signum: int, _frame: object) -> None:
        server.should_exit = True
        sup.request_stop(signum)

    # uvicorn handles the signals while it serves and raises them again once it has stopped;
    # these handlers then stop the processor instead of killing the process mid-flush.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.run()  # returns on SIGINT/SIGTERM, or once the processor has ended by itself
    finally:
        sup.request_stop()
        thread.join(120)
    return (sup.exit_code or 0) if sup.ended_by_itself else 0


def _cmd_create_user(args: argparse.Namespace) -> int:
    import getpass

    from api.auth import UserError, UserStore
    from libs.config import ConfigError, load_config

    try:
        config = load_config(args.config, check_files=False)
    except ConfigError as exc:
        print(f"lookout: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("lookout: the passwords differ", file=sys.stderr)
            return 2
    store = UserStore(config.data_path("auth") / "users.json")
    try:
        user = store.add(args.username, password, args.role, replace=args.replace)
    except UserError as exc:
        print(f"lookout: {exc}", file=sys.stderr)
        return 2
    print(f"user {user.username} ({user.role}) saved in {store.path}")
    if args.replace:
        print("tokens issued to this user before now are no longer accepted")
    return 0


def _cmd_make_certs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from api.certs import make_processor_certificate

    try:
        cert, key = make_processor_certificate(Path(args.out), args.host)
    except ValueError as exc:
        print(f"lookout: {exc}", file=sys.stderr)
        return 2
    print(f"CA certificate (import into browsers): {Path(args.out) / 'ca' / 'ca.pem'}")
    print(f"processor certificate: {cert}\nprocessor key:         {key}")
    print("set [API] SSLEnabled = True, SSLCertificateFile and SSLKeyFile to these paths")
    return 0


def _device_problem(config: LookoutConfig) -> str | None:
    """``file: [Detector] Device: why`` when the device cannot run on this install."""
    from libs.config.errors import ConfigProblem
    from libs.detectors import device_unavailable

    why = device_unavailable(config)
    if why is None:
        return None
    return str(ConfigProblem(str(config.path), "Detector", "Device", why))


def _cmd_check_config(args: argparse.Namespace) -> int:
    from libs.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"lookout: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    problem = _device_problem(cfg)
    if problem is not None:
        print(f"lookout: invalid configuration:\n{problem}", file=sys.stderr)
        return 2
    print(f"{args.config}: valid")
    print(f"  data directory:   {cfg.data_dir}")
    print(f"  assets directory: {cfg.assets_dir}")
    print(f"  detector:         {cfg.detector.device} / {cfg.detector.name}")
    from libs.detectors.budget import thread_budget

    print(f"  threads:          {thread_budget(cfg).describe().removeprefix('thread budget: ')}")
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


def _cmd_migrate_config(args: argparse.Namespace) -> int:
    from pathlib import Path

    from libs.config.migrate import MigrateError, migrate_file, remaining_problems

    old, new = Path(args.old), Path(args.new)
    try:
        changes = migrate_file(old, new, force=args.force)
    except (MigrateError, OSError) as exc:
        print(f"lookout migrate-config: {exc}", file=sys.stderr)
        return 2
    for change in changes:
        print(change)
    print(f"wrote {new}: {len(changes)} change{'' if len(changes) == 1 else 's'}"
          if changes else f"wrote {new}: nothing needed changing")
    problems = remaining_problems(new)
    for problem in problems:
        print(f"needs attention: {problem}", file=sys.stderr)
    print(f"next: lookout check-config --config {new}")
    return 1 if problems else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from libs.config import ConfigError, load_config
    from libs.evaluation.evaluate import (
        check_detections,
        evaluate_sequence,
        parse_line,
        render_markdown,
        tracker_config,
        write_results,
    )
    from libs.evaluation.runner import make_tracker
    from libs.evaluation.tracking import Sequence as MotSequence
    from libs.evaluation.tracking import load_sequence

    def fail(message: str) -> int:
        print(f"lookout evaluate: {message}", file=sys.stderr)
        return 2

    try:
        config = load_config(args.config, check_files=False)
        lines = [parse_line(text) for text in args.line]
        check_detections(args.detections)
        tracker_cfg = tracker_config(config, args.tracker)
    except KeyError as exc:
        return fail(str(exc.args[0]))
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    out_dir = Path(args.output_dir) if args.output_dir else config.data_path("evaluation")
    if args.detections == "pipeline":
        detector_min = args.min_score if args.min_score is not None else config.detector.min_score
        wanted = make_tracker(tracker_cfg).min_score
        if wanted < detector_min:
            print(f"note: {tracker_cfg.name} takes boxes scoring {wanted:g} and up, but the "
                  f"detector's MinScore {detector_min:g} drops those below it (as `lookout "
                  "run` would)", file=sys.stderr)

    # Every sequence is loaded first, so a wrong folder is said before hours of work; one that
    # fails, then or while it runs, is reported and the others are still scored and written.
    failed: list[tuple[str, str]] = []
    sequences: list[MotSequence] = []
    for path in args.sequences:
        try:
            sequences.append(load_sequence(path))
        except (ValueError, FileNotFoundError, OSError) as exc:
            failed.append((path, str(exc)))
            print(f"lookout evaluate: {path}: {exc}", file=sys.stderr)
    if not sequences:
        return 2
    command = "lookout " + shlex.join(args.argv)
    results = []
    for i, seq in enumerate(sequences, start=1):
        print(f"[{i}/{len(sequences)}] evaluating {seq.name} ({seq.length} frames, "
              f"{args.detections})...", file=sys.stderr, flush=True)
        try:
            results.append(evaluate_sequence(
                seq, config, detections=args.detections, tracker_name=args.tracker,
                lines=lines, camera=args.camera, min_score=args.min_score,
            ))
        except (ValueError, FileNotFoundError, OSError, KeyError, RuntimeError) as exc:
            reason = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            failed.append((str(seq.root), reason))
            print(f"lookout evaluate: {seq.name} failed: {reason}", file=sys.stderr)
            continue
        # Written after every sequence: an interrupted run keeps what it finished.
        md, js = write_results(results, out_dir, command, failed)
    if results:
        print(render_markdown(results))
        print(f"written: {md} and {js}", file=sys.stderr)
    if failed:
        print(f"lookout evaluate: {len(failed)} of {len(args.sequences)} sequences failed: "
              + "; ".join(f"{path} ({reason})" for path, reason in failed), file=sys.stderr)
        return 1
    return 0


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    from libs.config import ConfigError
    from processor.healthcheck import probe

    try:
        result = probe(args.config, timeout=args.timeout)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"lookout healthcheck: {exc}", file=sys.stderr)
        return 2
    print(result.message, file=sys.stdout if result.healthy else sys.stderr)
    return 0 if result.healthy else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lookout", description="Edge video analytics for people.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="process the configured cameras")
    run.add_argument("--config", default="config-x86.ini", help="INI file (default: %(default)s)")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--no-progress", action="store_true", help="do not show the progress line")
    run.add_argument("--no-api", action="store_true",
                     help="process only, without the API; exit when every recording is done")
    run.set_defaults(func=_cmd_run)

    cu = sub.add_parser("create-user", help="add an API user (or replace one's password)")
    cu.add_argument("username")
    cu.add_argument("--role", choices=["admin", "viewer"], default="admin")
    cu.add_argument("--config", default="config-x86.ini")
    cu.add_argument("--password-stdin", action="store_true",
                    help="read the password from the first line of standard input")
    cu.add_argument("--replace", action="store_true", help="replace an existing user")
    cu.set_defaults(func=_cmd_create_user)

    mc = sub.add_parser("make-certs",
                        help="make a self-signed CA and a certificate for this processor")
    mc.add_argument("--host", required=True, help="IP address or host name of the processor")
    mc.add_argument("--out", default="data/certs", help="output folder (default: %(default)s)")
    mc.set_defaults(func=_cmd_make_certs)

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
    ev.add_argument("--output-dir", default=None,
                    help="where evaluation.md and evaluation.json go (default: evaluation/ in "
                    "the config's DataDirectory)")
    ev.set_defaults(func=_cmd_evaluate)

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("--config", default="config-x86.ini")
    check.set_defaults(func=_cmd_check_config)

    mig = sub.add_parser(
        "migrate-config",
        help="write a Lookout configuration from a Smart Social Distancing one",
        description="Reads OLD (a Smart Social Distancing config-*.ini) and writes NEW for "
        "Lookout, keeping every comment: keys and sections Lookout does not act on are "
        "commented out with the reason, device and model names are mapped, [Classifier] "
        "becomes the faces + facemask steps, and paths that need attention are named. Each "
        "change is printed with its reason (docs/coming-from-ssd.md).",
    )
    mig.add_argument("old", metavar="OLD.ini", help="the reference configuration file")
    mig.add_argument("new", metavar="NEW.ini", help="the Lookout configuration to write")
    mig.add_argument("--force", action="store_true", help="replace NEW.ini if it exists")
    mig.set_defaults(func=_cmd_migrate_config)

    hc = sub.add_parser("healthcheck",
                        help="exit 0 if the running processor's GET /health answers 200 "
                        "(HTTPS with the configured certificate when SSLEnabled)")
    hc.add_argument("--config", default=os.environ.get("LOOKOUT_CONFIG", "config-x86.ini"),
                    help="INI file (default: $LOOKOUT_CONFIG, else %(default)s)")
    hc.add_argument("--timeout", type=float, default=5.0, help="seconds (default: %(default)s)")
    hc.set_defaults(func=_cmd_healthcheck)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
