"""A resumed recording takes back what the tracker and every stage knew at the checkpoint, so
what it produces after the resume point is what one uninterrupted run produces: the same
track ids, dwell sessions, loitering, engagement and audience figures, line crossings.

In process, on PETS09-S2L1's public detections with every analytic of the shipped
configuration; the end-to-end kill-and-restart check is in ``test_restart_exact.py``.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from libs.config import load_config
from libs.evaluation.mot import load_mot
from libs.frame import Detections, Frame
from libs.records import RecordIds
from libs.state import dumps, loads
from processor.pipeline import CameraPipeline, SourceDetections
from processor.resume import WARMUP_FRAMES
from tests.conftest import PETS

T0 = datetime(2009, 3, 1, 9, 0, tzinfo=UTC)
FPS = 7.0
RESUME_AT = 300  # the checkpoint: every frame before it processed


@pytest.fixture
def pets_run(shipped_config: Path):
    config = load_config(shipped_config)
    source = config.sources[0]
    det = load_mot(PETS / "det" / "det.txt")
    image = np.zeros((576, 768, 3), np.uint8)
    n_frames = int(det.frames.max())

    def pipeline() -> CameraPipeline:
        pipe = CameraPipeline(config, source, SourceDetections(config.detector),
                              with_loggers=False)
        pipe.ids = RecordIds.for_recording("pets")  # as the worker does for a recording
        return pipe

    def run(pipe: CameraPipeline, first: int, last: int, replay: bool = False) -> list:
        records = []
        for index in range(first, last):
            d = det.at(index + 1)
            frame = Frame(source.id, index, T0 + timedelta(seconds=index / FPS), image.copy(),
                          Detections(boxes=d.boxes, scores=d.conf))
            frame.replay = replay
            frame = pipe.process_detections(frame)
            records += frame.records
        return records

    def finish(pipe: CameraPipeline) -> list:
        end = pipe.finish()
        return list(end.records) if end is not None else []

    return pipeline, run, finish, n_frames


def as_rows(records: list) -> list[tuple[str, dict]]:
    return [(r.kind, asdict(r)) for r in records]


def test_a_resumed_pipeline_produces_what_the_uninterrupted_one_does(pets_run) -> None:
    pipeline, run, finish, n_frames = pets_run
    # One run, with the checkpoint's snapshot taken after frame RESUME_AT - 1.
    whole = pipeline()
    run(whole, 0, RESUME_AT)
    blob = dumps(whole.snapshot())
    want = as_rows(run(whole, RESUME_AT, n_frames) + finish(whole))
    kinds = {kind for kind, _ in want}
    assert {"line_crossing", "loitering", "dwell", "audience", "engagement"} <= kinds, kinds

    # The restart: the warm-up frames replayed, the state taken back, then on to the end.
    def resumed(restore: bool) -> list[tuple[str, dict]]:
        pipe = pipeline()
        run(pipe, RESUME_AT - WARMUP_FRAMES, RESUME_AT, replay=True)
        if restore:
            assert pipe.restore(loads(blob))
        return as_rows(run(pipe, RESUME_AT, n_frames) + finish(pipe))

    got = resumed(restore=True)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == w
    # Without the state (what a restart did before): the warm-up alone gets other ids and
    # cuts the sessions open at the checkpoint, so the records differ.
    without = resumed(restore=False)
    differ = {w[0] for w, g in zip(want, without, strict=False) if w != g}
    assert "loitering" in differ or len(without) != len(want)


def test_a_snapshot_of_other_stages_is_refused_and_changes_nothing(pets_run,
                                                                    shipped_config: Path):
    pipeline, run, _, _ = pets_run
    pipe = pipeline()
    run(pipe, 0, 20)
    state = loads(dumps(pipe.snapshot()))
    state["stages"] = state["stages"][1:]  # as if a stage had been removed from the file
    other = pipeline()
    before = dumps(other.snapshot())
    assert not other.restore(state)
    assert dumps(other.snapshot()) == before
    # Saved by an older version whose last stage kept one attribute less: refused whole
    # (the tracker is not restored either), not a crash of the camera.
    state = loads(dumps(pipe.snapshot()))
    k = max(i for i, (_, kept) in enumerate(state["stages"]) if kept)
    name, kept = state["stages"][k]
    state["stages"][k] = (name, {a: v for a, v in kept.items() if a != sorted(kept)[0]})
    assert not other.restore(state)
    assert dumps(other.snapshot()) == before


def test_every_stateful_stage_names_attributes_it_sets() -> None:
    """``STATE`` names attributes each registered stage and tracker really sets (a rename
    would otherwise only show at the first restart), and every stage of the shipped
    configuration that keeps per-person state declares some."""
    import inspect
    import re

    from libs.post_processors import POST_PROCESSORS
    from libs.trackers import TRACKERS

    classes = [POST_PROCESSORS.get(n) for n in POST_PROCESSORS.names()] + \
        [TRACKERS.get(n) for n in TRACKERS.names()]
    for cls in classes:
        source = "".join(inspect.getsource(c) for c in cls.__mro__
                         if c.__module__.startswith("libs.") and c.__name__ != "Stateful")
        for attr in cls.STATE:
            assert re.search(rf"self\.{attr}\s*(:[^=]*)?=", source), \
                f"{cls.__name__}: STATE names {attr}, which it never sets"
    keeps_tracks = {name for name in POST_PROCESSORS.names()
                    if "self.tracks" in inspect.getsource(POST_PROCESSORS.get(name))}
    assert keeps_tracks >= {"audience", "engagement", "faces", "facemask", "head_pose",
                            "demographics"}
    for name in keeps_tracks:
        assert "tracks" in POST_PROCESSORS.get(name).STATE, name


def test_a_state_file_can_only_rebuild_state_types() -> None:
    """The state is pickled; reading it rebuilds Lookout's, numpy's and the standard
    containers' types only, so a tampered file cannot run code."""
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match=r"(posix|os|nt)\.system"):
        loads(pickle.dumps(Evil()))
    with pytest.raises(pickle.UnpicklingError):
        loads(pickle.dumps(Path("/etc/passwd")))  # a class, but not of an allowed module
    from libs.loggers.writer import atomic_write_bytes

    class CallsAFunction:
        def __reduce__(self):
            return (atomic_write_bytes, (Path("/tmp/x"), b""))

    with pytest.raises(pickle.UnpicklingError):  # Lookout's own functions are not allowed
        loads(pickle.dumps(CallsAFunction()))
    value = {"a": np.arange(3.0), "t": T0, "d": timedelta(seconds=2), "s": {1, 2}}
    back = loads(dumps(value))
    assert np.array_equal(back["a"], value["a"]) and back["t"] == T0 and back["s"] == {1, 2}
