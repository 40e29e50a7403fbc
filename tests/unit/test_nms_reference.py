"""The numpy reference of TensorRT's EfficientNMS_TRT (tests/gpu/nms_reference.py), on hand-made cases whose
answers are worked out by hand: thresholds inclusive, per-class suppression, greedy order, corner order, the
output limit and its zero padding. The GPU test compares the real plugin with it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gpu.nms_reference import crafted_inputs, efficient_nms, iou

A = [0.0, 0.0, 1.0, 1.0]
A_SHIFTED = [0.0, 0.0, 1.0, 1.5]  # IoU with A: 1 / 1.5 = 0.667
A_HALF = [0.0, 0.0, 1.0, 2.0]  # IoU with A: 1 / 2 = 0.5 exactly
FAR = [5.0, 5.0, 6.0, 6.0]
TOUCHING = [1.0, 0.0, 2.0, 1.0]  # shares A's right edge: no area in common


def nms(boxes, scores, **kw):
    params = {"score_threshold": 0.1, "iou_threshold": 0.5, "max_output_boxes": 4, **kw}
    return efficient_nms(np.array([boxes], np.float32), np.array([scores], np.float32), **params)


def detections(out, image=0):
    n = int(out["num_detections"][image, 0])
    return [([round(v, 6) for v in out["detection_boxes"][image, k].tolist()],
             round(float(out["detection_scores"][image, k]), 6),
             int(out["detection_classes"][image, k])) for k in range(n)]


def test_iou_of_hand_made_boxes():
    assert iou(np.array(A), np.array(A)) == 1.0
    assert iou(np.array(A), np.array(A_SHIFTED)) == pytest.approx(1 / 1.5)
    assert iou(np.array(A), np.array(A_HALF)) == 0.5
    assert iou(np.array(A), np.array(FAR)) == 0.0
    assert iou(np.array(A), np.array(TOUCHING)) == 0.0
    assert iou(np.array([1.0, 1.0, 0.0, 0.0]), np.array(A)) == 1.0  # corners in either order
    assert iou(np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.0, 0.0, 0.0, 1.0])) == 0.0  # no area


def test_an_overlapping_box_of_the_same_class_is_suppressed_not_one_of_another_class():
    out = nms([A, A_SHIFTED], [[0.9, 0.0], [0.8, 0.7]])
    assert detections(out) == [(A, 0.9, 0), (A_SHIFTED, 0.7, 1)]  # (A_SHIFTED, class 0) lost to A


def test_iou_equal_to_the_threshold_suppresses_and_a_score_equal_to_it_is_kept():
    out = nms([A, A_HALF, FAR], [[0.9], [0.8], [0.1]])
    assert detections(out) == [(A, 0.9, 0), (FAR, 0.1, 0)]
    out = nms([A, A_HALF], [[0.9], [0.8]], iou_threshold=0.51)
    assert detections(out) == [(A, 0.9, 0), (A_HALF, 0.8, 0)]
    assert detections(nms([A], [[0.0999]])) == []


def test_suppression_is_greedy_in_score_order():
    """B overlaps A and C; C does not overlap A: A suppresses B, so C, which only B would have suppressed, stays."""
    b, c = [0.0, 0.3, 1.0, 1.3], [0.0, 0.6, 1.0, 1.6]
    assert iou(np.array(A), np.array(b)) >= 0.5 and iou(np.array(b), np.array(c)) >= 0.5
    assert iou(np.array(A), np.array(c)) < 0.5
    out = nms([c, b, A], [[0.7], [0.8], [0.9]])
    assert detections(out) == [(A, 0.9, 0), (c, 0.7, 0)]


def test_boxes_come_back_as_given_even_with_swapped_corners():
    swapped = [1.0, 0.0, 0.0, 1.0]  # A with x1 and x2 swapped: the same box
    out = nms([swapped, A], [[0.95], [0.9]])
    assert detections(out) == [(swapped, 0.95, 0)]


def test_the_output_limit_cuts_and_the_rest_is_zero_padded():
    boxes = [[float(i) * 2, 0.0, float(i) * 2 + 1, 1.0] for i in range(6)]
    scores = [[0.5 + i / 20] for i in range(6)]
    out = nms(boxes, scores, max_output_boxes=4)
    assert out["num_detections"].tolist() == [[4]]
    assert [c for _, _, c in detections(out)] == [0, 0, 0, 0]
    assert [s for _, s, _ in detections(out)] == [0.75, 0.7, 0.65, 0.6]  # the best four, best first
    out = nms(boxes[:2], scores[:2], max_output_boxes=4)
    assert out["num_detections"].tolist() == [[2]]
    assert not out["detection_boxes"][0, 2:].any() and not out["detection_scores"][0, 2:].any()
    assert not out["detection_classes"][0, 2:].any()
    assert out["detection_classes"].dtype == np.int32 and out["num_detections"].dtype == np.int32


def test_background_class_and_class_agnostic():
    out = nms([A, FAR], [[0.9, 0.3], [0.2, 0.8]], background_class=1)
    assert detections(out) == [(A, 0.9, 0), (FAR, 0.2, 0)]
    out = nms([A, A_SHIFTED], [[0.9, 0.0], [0.0, 0.8]], class_agnostic=True)
    assert detections(out) == [(A, 0.9, 0)]


def test_each_image_of_a_batch_is_its_own():
    boxes = np.array([[A, FAR], [A, A_SHIFTED]], np.float32)
    scores = np.array([[[0.9], [0.8]], [[0.6], [0.7]]], np.float32)
    out = efficient_nms(boxes, scores, score_threshold=0.1, iou_threshold=0.5, max_output_boxes=3)
    assert out["num_detections"].tolist() == [[2], [1]]
    assert detections(out, 1) == [(A_SHIFTED, 0.7, 0)]


def test_the_dense_path_is_refused():
    with pytest.raises(ValueError, match="dense path"):
        nms([A], [[0.9]], score_threshold=0.001)


def test_crafted_inputs_have_no_ties_and_exercise_suppression():
    feeds = crafted_inputs(batch=2, boxes=64, classes=4, seed=0)
    assert feeds["boxes"].shape == (2, 64, 4) and feeds["scores"].shape == (2, 64, 4)
    assert len(np.unique(feeds["scores"])) == feeds["scores"].size
    out = efficient_nms(feeds["boxes"], feeds["scores"], score_threshold=0.25, iou_threshold=0.5,
                        max_output_boxes=100)
    candidates = (feeds["scores"] >= 0.25).sum(axis=(1, 2))
    kept = out["num_detections"][:, 0]
    assert (kept > 0).all() and (kept < candidates).all()  # some suppressed, some kept
