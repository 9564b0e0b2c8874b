"""``anonymizer``: faces blurred in the frame image, so every preview, screenshot and saved
image shows blurred pixels.

**Place it last**: its section after every other ``[SourcePostProcessor_N]``.  It changes
``frame.image`` in place; the loggers, which run after every post-processor, copy that image
for the preview (``video_logger``) and the screenshots (``file_system_logger``), while the steps
before it saw the original pixels.  The blurs wait until somebody reads ``frame.image``
(:meth:`Frame.defer_edit <libs.frame.Frame.defer_edit>`): every reader behind this step gets
blurred pixels, and the frames nobody takes a picture of (most of them) are not blurred for
nothing.  The configuration check refuses an enabled step that reads
the image (``faces``, ``facemask``, ``head_pose``, ``demographics``, or any step whose class
sets ``reads_image = True``) behind it; steps that only use the detections (zones, heatmap...)
may follow it harmlessly.

**What is blurred**, per tracked person:

* a face (``face_box`` of the ``faces`` step) enlarged ``FaceScale`` times about its centre;
* the head region (:func:`libs.post_processors.faces.head_regions`: a square of
  ``HeadFraction`` of the box height, at least half its width, enlarged ``HeadPadding``
  times): with ``BlurHeads = always`` (default) for everybody, with ``BlurHeads = no_face``
  only when no face is known or the face was carried forward from an earlier frame
  (``face_fresh`` False).  ``always`` is the default because faces alone leak: on TUD-Campus a
  box holding two people overlapping got the face of the one behind, and the other face stayed
  sharp (YuNet still found 22 faces in the head regions of tracked people over the 71 frames
  with ``no_face``, none with ``always``; tests/test_faces_e2e.py checks it);
* the head regions of ``frame.metrics["raw_detections"]`` (a :class:`~libs.frame.Detections`)
  when a pipeline provides it: people the tracker has not confirmed yet.

Without the ``faces`` step every person's head region is blurred.

**How.**  Each region (clipped to the frame) is pixelated to ``Cells`` blocks along its longer
side (mean colour per block), the blocks are smoothed with a Gaussian of sigma one block and
scaled back up bilinearly: no detail smaller than a block survives, and pixels outside the
regions are untouched.  About 0.06 ms for a 105 px region.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from pydantic import Field

from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.frame import Detections, Frame
from libs.geometry import iou_matrix
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.post_processors.faces import head_regions

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig

# After-tracker steps that read frame.image: they must run before the anonymizer.
IMAGE_STEPS = ("faces", "facemask", "head_pose", "demographics")


def clip_region(shape: tuple[int, ...], region: np.ndarray) -> tuple[int, int, int, int] | None:
    """``region`` (``x1, y1, x2, y2``) widened to whole pixels and clipped to an image of
    ``shape``; None when nothing of it is inside."""
    height, width = shape[:2]
    x1 = max(0, math.floor(float(region[0])))
    y1 = max(0, math.floor(float(region[1])))
    x2 = min(width, math.ceil(float(region[2])))
    y2 = min(height, math.ceil(float(region[3])))
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def blur_region(image: np.ndarray, region: np.ndarray, cells: int = 6) -> bool:
    """Pixelate and smooth ``region`` (``x1, y1, x2, y2``) of ``image`` in place (see the
    module docstring).

    The region is widened to whole pixels and clipped to the image; returns False when
    nothing of it is inside.
    """
    clipped = clip_region(image.shape, region)
    if clipped is None:
        return False
    x1, y1, x2, y2 = clipped
    roi = image[y1:y2, x1:x2]
    h, w = roi.shape[:2]
    block = max(max(w, h) / max(cells, 1), 1.0)
    small = cv2.resize(
        roi, (max(1, round(w / block)), max(1, round(h / block))), interpolation=cv2.INTER_AREA
    )
    # Mix each block with its neighbours, then back to full size without block edges: all
    # that is left of the region is a smooth field through a few blurred block means.
    small = cv2.GaussianBlur(small, (0, 0), 1.0, borderType=cv2.BORDER_REPLICATE)
    image[y1:y2, x1:x2] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return True


def scaled_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Boxes ``(N, 4)`` enlarged ``scale`` times about their centres."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    centre = (b[:, :2] + b[:, 2:]) * 0.5
    half = (b[:, 2:] - b[:, :2]) * 0.5 * scale
    return np.concatenate([centre - half, centre + half], axis=1)


class AnonymizerConfig(PluginConfig):
    """``[SourcePostProcessor_N] Name = anonymizer``; must be the last post-processor."""

    face_scale: float = Field(
        1.4,
        alias="FaceScale",
        ge=1.0,
        le=4.0,
        description="Face boxes are blurred enlarged this many times about their centre.",
        json_schema_extra=form("a number from 1 to 4"),
    )
    head_fraction: float = Field(
        0.2,
        alias="HeadFraction",
        gt=0.0,
        le=1.0,
        description="Head side as a fraction of the person box height (at least half the "
        "box width, at most the box width).",
        json_schema_extra=form("a number from 0 to 1"),
    )
    head_padding: float = Field(
        1.5,
        alias="HeadPadding",
        ge=1.0,
        le=4.0,
        description="The head square is enlarged this many times about its centre.",
        json_schema_extra=form("a number from 1 to 4"),
    )
    blur_heads: Literal["always", "no_face"] = Field(
        "always",
        alias="BlurHeads",
        description="Blur every person's head region (always), or only where no fresh face "
        "is known (no_face).",
        json_schema_extra=form("always or no_face"),
    )
    cells: int = Field(
        6,
        alias="Cells",
        ge=1,
        le=32,
        description="Pixelation blocks along the longer side of a blurred region.",
        json_schema_extra=form("an integer from 1 to 32"),
    )

    def cross_check(self, config: LookoutConfig) -> list[tuple[str | None, str | None, str]]:
        """No enabled step that reads the image may run after this one."""
        if not self.enabled:
            return []
        steps = config.source_post_processors
        start = next((i for i, step in enumerate(steps) if step is self), len(steps))
        for later in steps[start + 1 :]:
            if later.enabled and reads_image(later.name):
                where = f"[{later.section}] " if later.section else ""
                return [(None, "Name", f"anonymizer must come after every step that reads the "
                         f"image, but {where}{later.name} runs after it and would see blurred "
                         "faces")]
        return []


def reads_image(name: str) -> bool:
    """Whether the registered step ``name`` looks at pixels after the tracker: the face steps
    (:data:`IMAGE_STEPS`) and any step whose class sets ``reads_image = True``."""
    try:
        cls = POST_PROCESSORS.get(name)
    except KeyError:
        return False
    if cls.phase != "after_tracker":
        return False
    return name in IMAGE_STEPS or bool(getattr(cls, "reads_image", False))


@POST_PROCESSORS.register("anonymizer")
class Anonymizer(PostProcessor):
    Config = AnonymizerConfig
    phase = "after_tracker"
    needs_image = True

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        settings = plugin_settings(AnonymizerConfig, config)
        super().__init__(settings, source, app)
        self.settings = settings

    def regions(self, frame: Frame) -> np.ndarray:
        """``(M, 4)`` regions to blur on this frame (frame pixels, not clipped)."""
        s = self.settings
        dets = frame.detections
        attrs = dets.attributes
        heads = head_regions(dets.boxes, s.head_fraction, s.head_padding).astype(np.float64)
        faces = attrs.get("face_box")
        if faces is None:
            out = heads
        else:
            faces = np.asarray(faces, np.float64).reshape(-1, 4)
            known = np.isfinite(faces).all(axis=1)
            fresh = np.asarray(attrs.get("face_fresh", np.ones(len(dets), bool)), bool)
            need_head = np.ones(len(dets), bool) if s.blur_heads == "always" else ~known | ~fresh
            out = np.concatenate(
                [scaled_boxes(faces[known], s.face_scale), heads[need_head]], axis=0
            )
        raw = frame.metrics.get("raw_detections")
        if isinstance(raw, Detections) and len(raw):
            # People the tracker has not (yet) confirmed; the others are blurred already.
            boxes = raw.boxes
            if len(dets):
                boxes = boxes[iou_matrix(boxes, dets.boxes).max(axis=1) < 0.5]
            raw_heads = head_regions(boxes, s.head_fraction, s.head_padding)
            out = np.concatenate([out, raw_heads.astype(np.float64)], axis=0)
        return out

    def process(self, frame: Frame) -> Frame:
        shape = (frame.height, frame.width)
        regions = [r for r in self.regions(frame) if clip_region(shape, r) is not None]
        frame.metrics["anonymized_regions"] = len(regions)
        if regions:
            cells = self.settings.cells

            def blur(image: np.ndarray) -> None:
                for r in regions:
                    blur_region(image, r, cells)

            frame.defer_edit(blur)
        return frame
