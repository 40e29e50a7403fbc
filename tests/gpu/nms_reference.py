"""A numpy reference of TensorRT's EfficientNMS_TRT plugin in standard NMS mode (TensorRT's
plugin/efficientNMSPlugin: README.md and efficientNMSInference.cu), for the GPU test of the plugin
(tests/gpu/test_plugins.py) and tested itself on the CPU (tests/unit/test_nms_reference.py).

Per image:
1. candidates: every (box, class) whose score >= score_threshold and whose class is not background_class;
2. sorted by score, highest first (the plugin keeps the 4096 best);
3. greedy NMS: a candidate is kept unless a kept candidate of the same class (any class with class_agnostic)
   overlaps it with IoU >= iou_threshold; IoU on corner boxes whose coordinates are put in order first (a box
   given as (x2, y1, x1, y2) is the same box), 0 when boxes do not intersect or have no area;
4. the first max_output_boxes kept are the detections: num_detections, then boxes (as given, corner coding),
   scores and classes, zero-padded to max_output_boxes.

The plugin's kernel scans 4096 candidates and decides the order of equal scores by its own atomics: callers
craft inputs without ties and with fewer candidates. A score_threshold under 0.007 takes another kernel path
(every score a candidate, the low ones at -32768): not modelled; keep thresholds at or above it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_CANDIDATES = 4096  # the plugin's numSelectedBoxes
DENSE_BELOW = 0.007  # the plugin's other kernel path (see the module's docstring)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two corner boxes (x1, y1, x2, y2), coordinates ordered first, as the plugin's IOU()."""
    a = np.concatenate([np.minimum(a[:2], a[2:]), np.maximum(a[:2], a[2:])]).astype(np.float64)
    b = np.concatenate([np.minimum(b[:2], b[2:]), np.maximum(b[:2], b[2:])]).astype(np.float64)
    low, high = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    if np.any(low > high):
        return 0.0
    inter = float(np.prod(high - low))
    if inter <= 0.0:
        return 0.0
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2])) - inter
    return inter / union if union > 0.0 else 0.0


def image_nms(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, iou_threshold: float,
              max_output_boxes: int, background_class: int = -1,
              class_agnostic: bool = False) -> list[tuple[int, int, float]]:
    """The detections of one image: (box index, class, score), best first."""
    anchors, classes = np.nonzero(scores >= np.float32(score_threshold))
    keep = classes != background_class
    anchors, classes = anchors[keep], classes[keep]
    values = scores[anchors, classes]
    order = np.argsort(-values, kind="stable")[:MAX_CANDIDATES]
    kept: list[tuple[int, int, float]] = []
    for i in order:
        box, cls = int(anchors[i]), int(classes[i])
        if len(kept) >= max_output_boxes:
            break
        if any((class_agnostic or c == cls) and iou(boxes[box], boxes[b]) >= iou_threshold for b, c, _ in kept):
            continue
        kept.append((box, cls, float(values[i])))
    return kept


def efficient_nms(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, iou_threshold: float,
                  max_output_boxes: int, background_class: int = -1,
                  class_agnostic: bool = False) -> dict[str, Any]:
    """The plugin's four outputs for boxes [B, N, 4] and scores [B, N, C] (float32, corner coding, scores as
    given), named as tests/models.efficient_nms_proto names them."""
    if score_threshold < DENSE_BELOW:
        raise ValueError(f"score_threshold {score_threshold} < {DENSE_BELOW}: the plugin's dense path is not modelled")
    batch = boxes.shape[0]
    out = {"num_detections": np.zeros((batch, 1), np.int32),
           "detection_boxes": np.zeros((batch, max_output_boxes, 4), np.float32),
           "detection_scores": np.zeros((batch, max_output_boxes), np.float32),
           "detection_classes": np.zeros((batch, max_output_boxes), np.int32)}
    for image in range(batch):
        found = image_nms(boxes[image], scores[image], score_threshold=score_threshold, iou_threshold=iou_threshold,
                          max_output_boxes=max_output_boxes, background_class=background_class,
                          class_agnostic=class_agnostic)
        out["num_detections"][image, 0] = len(found)
        for k, (box, cls, score) in enumerate(found):
            out["detection_boxes"][image, k] = boxes[image, box]
            out["detection_scores"][image, k] = score
            out["detection_classes"][image, k] = cls
    return out


def crafted_inputs(batch: int = 2, boxes: int = 64, classes: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Boxes in clusters (so that suppression happens: neighbours overlap with IoU from about 0.3 to 0.9), some
    with their corners swapped, and distinct scores (no ties: their order is the plugin's own), about half of
    them under a 0.25 threshold."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.2, 0.8, (batch, boxes // 4 + 1, 2))[:, np.arange(boxes) // 4]
    centres = centres + rng.normal(0, 0.03, (batch, boxes, 2))
    half = rng.uniform(0.05, 0.15, (batch, boxes, 2))
    corners = np.concatenate([centres - half, centres + half], axis=-1).astype(np.float32)
    flip = rng.random((batch, boxes)) < 0.2
    corners[flip] = corners[flip][:, [2, 1, 0, 3]]  # x1 and x2 swapped: the same box to the plugin
    scores = rng.permutation(batch * boxes * classes).reshape(batch, boxes, classes).astype(np.float64)
    scores = (0.02 + 0.96 * scores / scores.max()).astype(np.float32)  # distinct values in [0.02, 0.98]
    return {"boxes": corners, "scores": scores}


def iou_margin(boxes: np.ndarray, threshold: float) -> float:
    """The smallest |IoU - threshold| over every pair of boxes of each image (boxes [B, N, 4]): a pair too close to
    the threshold could be decided either way by the plugin's float32 arithmetic."""
    margin = np.inf
    for image in boxes:
        for i in range(len(image)):
            for j in range(i + 1, len(image)):
                margin = min(margin, abs(iou(image[i], image[j]) - threshold))
    return float(margin)
