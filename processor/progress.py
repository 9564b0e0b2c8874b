"""Progress of recordings: frames, fps and time left, per camera, on stderr.

On a terminal one line is redrawn in place twice a second; otherwise (CI, a log file) a
plain line is printed every 10 seconds and once at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _eta(seconds: float) -> str:
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def describe(cid: str, st: dict[str, Any]) -> str:
    total = st.get("total_frames")
    done = st.get("next_index") or st.get("frames", 0)
    fps = st.get("fps") or 0.0
    if total:
        pct = 100.0 * min(done, total) / total
        bar_len = 20
        filled = int(bar_len * min(done, total) / total)
        bar = "#" * filled + "-" * (bar_len - filled)
        left = (total - done) / fps if fps > 0 else float("nan")
        eta = _eta(left) if left == left else "--:--"
        text = f"{cid} [{bar}] {done}/{total} {pct:5.1f}% {fps:6.1f} fps ETA {eta}"
    else:
        text = f"{cid} {done} frames {fps:6.1f} fps"
    if st.get("max_fps"):
        text += f" (max {st['max_fps']:g})"
    if st.get("status") not in ("running", "idle"):
        text += f" ({st.get('status')})"
    return text


class ProgressDisplay:
    def __init__(self, enabled: bool = True, stream: TextIO | None = None,
                 plain_every: float = 10.0) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.plain_every = plain_every
        self._last_plain = 0.0
        self._width = 0

    def update(self, cameras: dict[str, dict[str, Any]], final: bool = False) -> None:
        if not self.enabled or not cameras:
            return
        line = " | ".join(describe(cid, st) for cid, st in cameras.items())
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad + ("\n" if final else ""))
            self._width = len(line)
            self.stream.flush()
            return
        now = time.monotonic()
        if final or now - self._last_plain >= self.plain_every:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_plain = now
