"""BackgroundWriter: ordering, headers, torn-line repair, flush/close, threads, fork, kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from libs.loggers.writer import (
    BackgroundWriter,
    LatestOnlyWorker,
    WriterClosedError,
    atomic_write_bytes,
    write_if_changed,
)

ROOT = Path(__file__).resolve().parents[1]


def test_header_once_then_lines_in_order(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "log.csv"
    with BackgroundWriter() as writer:
        for k in range(100):
            writer.append_line(path, f"{k},x", header="K,V")
        assert writer.flush(5)
        assert path.read_text() == "K,V\n" + "".join(f"{k},x\n" for k in range(100))
    assert writer.closed


def test_header_not_repeated_for_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("K,V\n1,a\n")
    with BackgroundWriter() as writer:
        writer.append_line(path, "2,b\n", header="K,V")
    assert path.read_text() == "K,V\n1,a\n2,b\n"


def test_empty_existing_file_gets_header(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"")
    with BackgroundWriter() as writer:
        writer.append_line(path, "1,a", header="K,V")
    assert path.read_text() == "K,V\n1,a\n"


def test_torn_last_line_is_cut_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"K,V\n1,a\n2,partial-li")
    with BackgroundWriter() as writer:
        writer.append_line(path, "3,c", header="K,V")
    assert path.read_text() == "K,V\n1,a\n3,c\n"


def test_torn_file_without_any_newline_starts_over_with_header(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"K,")  # the crash hit while the header itself was written
    with BackgroundWriter() as writer:
        writer.append_line(path, "1,a", header="K,V")
    assert path.read_text() == "K,V\n1,a\n"


def test_long_torn_tail_spanning_several_read_chunks(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"K,V\n1,a\n" + b"z" * 200_000)
    with BackgroundWriter() as writer:
        writer.append_line(path, "2,b")
    assert path.read_text() == "K,V\n1,a\n2,b\n"


def test_file_replaced_behind_the_writer_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    with BackgroundWriter() as writer:
        writer.append_line(path, "1", header="H")
        assert writer.flush(5)
        path.unlink()
        writer.append_line(path, "2", header="H")
    assert path.read_text() == "H\n2\n"


def test_many_threads_many_files_every_line_whole(tmp_path: Path) -> None:
    files = [tmp_path / f"f{k}.csv" for k in range(3)]
    per_thread = 400
    writer = BackgroundWriter(max_queue=50)  # small queue: producers block, nothing is lost

    def produce(t: int) -> None:
        for k in range(per_thread):
            writer.append_line(files[k % 3], f"{t},{k}," + "p" * (k % 50), header="T,K,P")

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    writer.close()

    seen: dict[int, list[int]] = {t: [] for t in range(8)}
    for path in files:
        lines = path.read_text().splitlines()
        assert lines[0] == "T,K,P"
        assert lines.count("T,K,P") == 1
        for line in lines[1:]:
            t, k, pad = line.split(",")
            assert pad == "p" * (int(k) % 50)
            seen[int(t)].append(int(k))
    for t in range(8):
        # per file, each thread's lines keep their order; overall every line is there once
        assert sorted(seen[t]) == list(range(per_thread))
        for path_index in range(3):
            mine = [k for k in seen[t] if k % 3 == path_index]
            assert mine == sorted(mine)


def test_flush_waits_for_queued_work(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    gate = threading.Event()
    writer = BackgroundWriter()
    writer.submit(lambda: gate.wait(5))
    writer.append_line(path, "after-gate")
    assert not writer.flush(0.2)  # still blocked behind the gate
    assert not path.exists()
    gate.set()
    assert writer.flush(5)
    assert path.read_text() == "after-gate\n"
    writer.close()


def test_close_is_idempotent_and_rejects_new_work(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    writer = BackgroundWriter()
    writer.append_line(path, "1")
    writer.close()
    writer.close()
    assert path.read_text() == "1\n"
    assert writer.flush(1)
    with pytest.raises(WriterClosedError):
        writer.append_line(path, "2")


def test_close_without_any_work() -> None:
    writer = BackgroundWriter()
    writer.close()
    assert writer.flush(1)


def test_bounded_queue_blocks_the_producer(tmp_path: Path) -> None:
    gate = threading.Event()
    writer = BackgroundWriter(max_queue=1)
    writer.submit(lambda: gate.wait(5))  # taken by the thread, which then waits
    deadline = time.monotonic() + 5
    while writer.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.append_line(tmp_path / "x", "1")  # fills the one slot
    done = threading.Event()

    def third() -> None:
        writer.append_line(tmp_path / "x", "2")
        done.set()

    producer = threading.Thread(target=third)
    producer.start()
    assert not done.wait(0.3), "put should block while the queue is full"
    gate.set()
    assert done.wait(5)
    producer.join()
    writer.close()
    assert (tmp_path / "x").read_text() == "1\n2\n"


def test_lru_closes_descriptors_but_keeps_appending(tmp_path: Path) -> None:
    writer = BackgroundWriter(max_open_files=2)
    paths = [tmp_path / f"{k}.log" for k in range(5)]
    for rnd in range(3):
        for p in paths:
            writer.append_line(p, f"{p.stem}-{rnd}", header="h")
    assert writer.flush(5)
    assert len(writer._files) <= 2
    writer.close()
    for p in paths:
        assert p.read_text() == "h\n" + "".join(f"{p.stem}-{r}\n" for r in range(3))


def test_write_file_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "data.bin"
    with BackgroundWriter() as writer:
        writer.write_file(path, b"one")
        writer.write_file(path, b"two")
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.bin"]


def test_write_if_changed_keeps_identical_files(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    assert write_if_changed(path, b"a\n")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert not write_if_changed(path, b"a\n")
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert write_if_changed(path, b"b\n")
    assert path.read_bytes() == b"b\n"


def test_atomic_write_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "dir-in-the-way"
    target.mkdir()
    (target / "child").write_text("x")  # os.replace onto a non-empty directory fails
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir-in-the-way"]


def test_failed_write_is_counted_and_the_thread_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with BackgroundWriter() as writer:
        writer.append_line(blocker / "cannot" / "exist.csv", "1")
        writer.append_line(tmp_path / "ok.csv", "2")
        assert writer.flush(5)
        assert writer.errors == 1
        assert writer.last_error is not None
    assert (tmp_path / "ok.csv").read_text() == "2\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_its_own_thread(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    writer = BackgroundWriter()
    writer.append_line(path, "parent-1", header="h")
    assert writer.flush(5)
    pid = os.fork()
    if pid == 0:  # child: the parent's thread does not exist here
        code = 0
        try:
            writer.append_line(path, "child")
            if not writer.flush(5):
                code = 3
            writer.close()
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    writer.append_line(path, "parent-2")
    writer.close()
    assert path.read_text() == "h\nparent-1\nchild\nparent-2\n"


_KILL_SCRIPT = """
import sys
from libs.loggers.writer import BackgroundWriter
w = BackgroundWriter()
k = 0
print("ready", flush=True)
while True:
    w.append_line(sys.argv[1], f"{k}," + "x" * 3000, header="K,PAD")
    k += 1
"""


def test_sigkill_leaves_only_whole_lines_and_the_next_writer_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    deadline = time.monotonic() + 10
    while (not path.exists() or path.stat().st_size < 200_000) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    data = path.read_bytes()
    lines = data.split(b"\n")
    assert lines[0] == b"K,PAD"
    # every complete line is whole; at most the very last one may be missing its end
    for expected, line in enumerate(lines[1:-1]):
        k, pad = line.split(b",")
        assert (int(k), pad) == (expected, b"x" * 3000)
    with BackgroundWriter() as writer:
        writer.append_line(path, "next," + "x" * 3000, header="K,PAD")
    text = path.read_text()
    assert text.endswith("\n")
    rows = text.splitlines()
    assert rows[0] == "K,PAD"
    assert rows[-1] == "next," + "x" * 3000
    assert all(row.split(",")[1] == "x" * 3000 for row in rows[1:])


def test_latest_only_worker_replaces_the_waiting_item() -> None:
    handled: list[int] = []
    gate = threading.Event()

    def handle(item: int) -> None:
        if item == 0:
            gate.wait(5)
        handled.append(item)

    worker: LatestOnlyWorker[int] = LatestOnlyWorker(handle)
    worker.offer(0)
    deadline = time.monotonic() + 5
    while not worker._busy and time.monotonic() < deadline:
        time.sleep(0.005)
    for k in range(1, 20):
        worker.offer(k)  # never blocks
    gate.set()
    assert worker.flush(5)
    worker.close()
    assert handled == [0, 19]
    assert worker.dropped == 18
    with pytest.raises(WriterClosedError):
        worker.offer(99)
