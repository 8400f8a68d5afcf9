"""Metrics: hand-counted masks, the empty-mask rule, ignore_index, the meter, the summary and the soft Dice loss."""

import json
import math

import numpy as np
import pytest
import torch

from unet.metrics import (
    ConfusionMeter,
    accuracy_from_counts,
    confusion_counts,
    dice,
    dice_from_counts,
    iou,
    iou_from_counts,
    soft_dice_loss,
    summary,
)

# 3x3 binary: foreground tp at (0,1), (1,1), (1,2); fp at (1,0); fn at (0,2).
TARGET_3X3 = np.array([[0, 1, 1], [0, 1, 1], [0, 0, 0]])
PRED_3X3 = np.array([[0, 1, 0], [1, 1, 1], [0, 0, 0]])

# 4x4 with three classes; the mistakes are at (0,1) 0->1, (1,3) 1->2 and (2,2) 2->1.
TARGET_4X4 = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]])
PRED_4X4 = np.array([[0, 1, 1, 1], [0, 0, 1, 2], [2, 2, 1, 2], [2, 2, 2, 2]])


def test_binary_counts_and_scores_by_hand():
    counts = confusion_counts(PRED_3X3, TARGET_3X3, num_labels=2)
    # background: tp (0,0), (2,0), (2,1), (2,2); fp (0,2); fn (1,0)
    np.testing.assert_array_equal(counts, [[4, 1, 1], [3, 1, 1]])
    assert counts.dtype == np.int64
    np.testing.assert_allclose(iou(PRED_3X3, TARGET_3X3, 2), [4 / 6, 3 / 5])
    np.testing.assert_allclose(dice(PRED_3X3, TARGET_3X3, 2), [8 / 10, 6 / 8])


def test_three_class_counts_and_scores_by_hand():
    counts = confusion_counts(PRED_4X4, TARGET_4X4, num_labels=3)
    np.testing.assert_array_equal(counts, [[3, 0, 1], [3, 2, 1], [7, 1, 1]])
    np.testing.assert_allclose(iou_from_counts(counts), [3 / 4, 3 / 6, 7 / 9])
    np.testing.assert_allclose(dice_from_counts(counts), [6 / 7, 6 / 9, 14 / 16])


def test_class_absent_from_both_masks_is_nan_and_skipped_by_means():
    empty = np.zeros((3, 3), dtype=np.uint8)
    np.testing.assert_array_equal(iou(empty, empty, 2), [1.0, np.nan])
    np.testing.assert_array_equal(dice(empty, empty, 2), [1.0, np.nan])
    # Class 2 never appears in a two-class picture scored as three classes: NaN, left out of the mean.
    scores = iou(PRED_3X3, TARGET_3X3, 3)
    assert math.isnan(scores[2])
    assert np.nanmean(scores) == pytest.approx((4 / 6 + 3 / 5) / 2)


@pytest.mark.parametrize(
    ("pred", "target"),
    [
        (np.zeros((3, 3), dtype=int), TARGET_3X3),  # foreground missed entirely
        (PRED_3X3, np.zeros((3, 3), dtype=int)),  # foreground predicted where there is none
    ],
)
def test_class_in_one_mask_only_scores_zero(pred, target):
    assert iou(pred, target, 2)[1] == 0.0
    assert dice(pred, target, 2)[1] == 0.0


def test_ignored_pixels_are_left_out_whatever_is_predicted_there():
    target = TARGET_3X3.copy()
    target[1, 0] = 255  # the pixel that was the foreground's false positive
    counts = confusion_counts(PRED_3X3, target, 2)
    np.testing.assert_array_equal(counts, [[4, 1, 0], [3, 0, 1]])
    np.testing.assert_allclose(iou(PRED_3X3, target, 2), [4 / 5, 3 / 4])

    pred = PRED_3X3.copy()
    pred[1, 0] = 0
    np.testing.assert_array_equal(confusion_counts(pred, target, 2), counts)


def test_custom_ignore_index_and_none():
    target = np.where(TARGET_3X3 == 1, 1, -1)  # background marked "skip"
    np.testing.assert_array_equal(confusion_counts(PRED_3X3, target, 2, ignore_index=-1), [[0, 1, 0], [3, 0, 1]])
    with pytest.raises(ValueError, match=r"\[-1\]"):
        confusion_counts(PRED_3X3, target, 2, ignore_index=None)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_numpy_and_torch_inputs_agree(dtype):
    expected = confusion_counts(PRED_4X4, TARGET_4X4, 3)
    pred, target = torch.from_numpy(PRED_4X4).to(dtype), torch.from_numpy(TARGET_4X4).to(dtype)
    np.testing.assert_array_equal(confusion_counts(pred, target, 3), expected)
    np.testing.assert_array_equal(confusion_counts(PRED_4X4.astype(np.uint16), target, 3), expected)


def test_boolean_masks_count_as_background_and_foreground():
    counts = confusion_counts(PRED_3X3.astype(bool), torch.from_numpy(TARGET_3X3).bool(), 2)
    np.testing.assert_array_equal(counts, [[4, 1, 1], [3, 1, 1]])


@pytest.mark.parametrize("num_labels", [2, 3, 5])
def test_agrees_with_set_logic_on_random_batches(num_labels):
    rng = np.random.default_rng(num_labels)
    target = rng.integers(0, num_labels, size=(2, 5, 6))
    pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, num_labels, size=target.shape))
    target[rng.random(target.shape) < 0.1] = 255

    pixels = list(np.ndindex(target.shape))
    expected_iou, expected_dice = [], []
    for c in range(num_labels):
        predicted = {p for p in pixels if pred[p] == c and target[p] != 255}
        true = {p for p in pixels if target[p] == c}
        union = predicted | true
        expected_iou.append(len(predicted & true) / len(union) if union else math.nan)
        expected_dice.append(2 * len(predicted & true) / (len(predicted) + len(true)) if union else math.nan)

    np.testing.assert_allclose(iou(pred, target, num_labels), expected_iou)
    np.testing.assert_allclose(dice(torch.from_numpy(pred), torch.from_numpy(target), num_labels), expected_dice)


def test_meter_over_batches_equals_counts_of_the_concatenation():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 3, size=(2, 4, 4)) for _ in range(3)]
    targets = [rng.integers(0, 3, size=(2, 4, 4)) for _ in range(3)]
    targets[1][0, 0, :] = 255

    meter = ConfusionMeter(num_labels=3)
    for pred, target in zip(preds, targets, strict=True):
        meter.update(torch.from_numpy(pred), torch.from_numpy(target))
    whole = confusion_counts(np.concatenate(preds), np.concatenate(targets), 3)
    np.testing.assert_array_equal(meter.counts, whole)
    np.testing.assert_array_equal(meter.iou(), iou_from_counts(whole))
    np.testing.assert_array_equal(meter.dice(), dice_from_counts(whole))

    meter.reset()
    np.testing.assert_array_equal(meter.counts, np.zeros((3, 3)))
    assert np.isnan(meter.iou()).all()


def test_meter_merge_and_set_counts_as_for_an_all_reduce():
    first, second = ConfusionMeter(3), ConfusionMeter(3)
    first.update(PRED_4X4, TARGET_4X4)
    second.update(PRED_4X4[:2], TARGET_4X4[:2])
    expected = first.counts + second.counts

    merged = ConfusionMeter(3)
    merged.merge(first)
    merged.merge(second.counts)
    np.testing.assert_array_equal(merged.counts, expected)

    gathered = torch.from_numpy(first.counts) + torch.from_numpy(second.counts)  # what all_reduce would leave
    first.counts = gathered.numpy()
    np.testing.assert_array_equal(first.counts, expected)
    assert first.counts.dtype == np.int64

    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        merged.merge(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        merged.counts = np.zeros((3, 2))


def test_counts_getter_returns_a_copy():
    meter = ConfusionMeter(2)
    meter.counts[0, 0] = 7
    assert meter.counts[0, 0] == 0


@pytest.mark.parametrize(
    ("pred", "target", "num_labels", "message"),
    [
        (PRED_3X3, TARGET_3X3[None], 2, r"shape \(3, 3\) but target has shape \(1, 3, 3\)"),
        (PRED_3X3, TARGET_3X3 * 128, 2, r"target holds values \[128\] outside the class range \[0, 2\)"),
        (PRED_3X3 * 3, TARGET_3X3, 2, r"pred holds values \[3\]"),
        (-PRED_3X3, TARGET_3X3, 2, r"pred holds values \[-1\]"),
        (PRED_3X3.astype(np.float32), TARGET_3X3, 2, "integer class indices"),
        (torch.zeros(3, 3), TARGET_3X3, 2, "argmax"),
        (PRED_3X3, TARGET_3X3, 1, "num_labels"),
    ],
)
def test_bad_inputs_raise_clear_errors(pred, target, num_labels, message):
    with pytest.raises(ValueError, match=message):
        confusion_counts(pred, target, num_labels)


def test_error_names_every_offending_value_and_suggests_the_fix():
    target = np.array([[0, 7], [255, 9]])
    with pytest.raises(ValueError, match=r"\[7, 9\].*mask // 255"):
        confusion_counts(np.zeros((2, 2), dtype=int), target, 2)


def test_summary_binary_headline_is_the_foreground():
    report = summary(np.array([0.9, 0.6]), np.array([0.95, 0.75]), ["background", "cat"])
    assert report == {
        "iou": {"per_class": {"background": 0.9, "cat": 0.6}, "mean": pytest.approx(0.75)},
        "dice": {"per_class": {"background": 0.95, "cat": 0.75}, "mean": pytest.approx(0.85)},
        "headline": {"iou": 0.6, "dice": 0.75},
    }


def test_summary_multiclass_headline_is_the_mean_without_nan():
    report = summary(np.array([0.5, np.nan, 1.0]), np.array([0.5, np.nan, 0.25]), ["a", "b", "c"])
    assert report["iou"]["per_class"] == {"a": 0.5, "b": None, "c": 1.0}
    assert report["headline"] == {"iou": 0.75, "dice": 0.375}
    assert report["iou"]["mean"] == 0.75
    json.dumps(report, allow_nan=False)  # NaN would make this raise


def test_summary_nan_foreground_and_all_nan_become_null():
    report = summary(np.array([1.0, np.nan]), np.array([np.nan, np.nan]), ["background", "foreground"])
    assert report["headline"] == {"iou": None, "dice": None}
    assert report["dice"]["mean"] is None
    assert report["iou"]["mean"] == 1.0
    json.dumps(report, allow_nan=False)


def test_summary_rejects_mismatched_names():
    with pytest.raises(ValueError, match="3 class names"):
        summary(np.array([0.5, 0.5]), np.array([0.5, 0.5]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="distinct"):
        summary(np.array([0.5, 0.5]), np.array([0.5, 0.5]), ["a", "a"])


def test_soft_dice_loss_by_hand():
    # Sigmoid(0) = 0.5 everywhere; one foreground pixel of four: intersection 0.5, sum of probs 2, of target 1.
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[1, 0], [0, 0]]])
    assert soft_dice_loss(logits, target, eps=0.0).item() == pytest.approx(1 - 1 / 3)
    assert soft_dice_loss(logits, target, eps=1.0).item() == pytest.approx(1 - 2 / 4)


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_soft_dice_loss_perfect_and_perfectly_wrong(channels):
    num_labels = max(channels, 2)
    target = torch.arange(2 * 8 * 8).reshape(2, 8, 8) % num_labels  # every class present
    wrong = (target + 1) % num_labels
    assert soft_dice_loss(_confident_logits(target, channels), target).item() < 1e-3
    assert soft_dice_loss(_confident_logits(wrong, channels), target).item() > 0.95


def _confident_logits(classes: torch.Tensor, channels: int) -> torch.Tensor:
    """Logits of +-50 that put all the probability on `classes`."""
    if channels == 1:
        return (classes.float() * 100 - 50).unsqueeze(1)
    return torch.nn.functional.one_hot(classes, channels).permute(0, 3, 1, 2).float() * 100 - 50


@pytest.mark.parametrize("channels", [1, 3])
def test_soft_dice_loss_gradients_flow_and_ignored_pixels_get_none(channels):
    torch.manual_seed(0)
    logits = torch.randn(2, channels, 4, 4, requires_grad=True)
    target = torch.randint(0, max(channels, 2), (2, 4, 4))
    target[0, 0, 0] = 255
    loss = soft_dice_loss(logits, target)
    loss.backward()
    assert 0 < loss.item() < 1
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[0, :, 0, 0] == 0).all()
    assert logits.grad.abs().sum() > 0

    # Whatever the logits say at the ignored pixel, the loss stays the same.
    changed = logits.detach().clone()
    changed[0, :, 0, 0] = 40.0
    assert soft_dice_loss(changed, target).item() == pytest.approx(loss.item())


def test_soft_dice_loss_half_precision_logits_give_a_float32_loss():
    target = torch.tensor([[[1, 0], [0, 0]]])
    loss = soft_dice_loss(torch.zeros(1, 1, 2, 2, dtype=torch.bfloat16), target, eps=0.0)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("logits", "target", "message"),
    [
        (torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.long), "channel axis"),
        (torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2), "integer class indices"),
        (torch.zeros(1, 1, 2, 2), torch.tensor([[[0, 128], [0, 0]]]), r"\[128\]"),
        (torch.zeros(1, 3, 2, 2), torch.tensor([[[0, 1], [2, 3]]]), r"\[3\]"),
    ],
)
def test_soft_dice_loss_bad_inputs(logits, target, message):
    with pytest.raises(ValueError, match=message):
        soft_dice_loss(logits, target)


def test_literature_accuracies_by_hand():
    """4x4, three classes, 16 pixels, 3 wrong: each class has one pixel taken by another."""
    counts = confusion_counts(PRED_4X4, TARGET_4X4, 3)
    global_accuracy, per_class = accuracy_from_counts(counts)
    assert global_accuracy == 13 / 16
    np.testing.assert_allclose(per_class, [3 / 4, 3 / 4, 7 / 8])
    report = summary(iou_from_counts(counts), dice_from_counts(counts), ["sky", "road", "car"], counts)
    assert report["accuracy"]["global"] == 13 / 16
    assert report["accuracy"]["class_average"] == pytest.approx((3 / 4 + 3 / 4 + 7 / 8) / 3)
    assert report["accuracy"]["per_class"]["car"] == 7 / 8
    # mIoU, the literature's headline: tp / (tp + fp + fn) per class, then the mean.
    assert report["headline"]["iou"] == pytest.approx((3 / 4 + 3 / 6 + 7 / 9) / 3)


def test_accuracies_leave_ignored_pixels_and_absent_classes_out():
    target = np.array([[0, 0, 255], [1, 1, 255]])
    pred = np.array([[0, 1, 2], [1, 1, 0]])  # class 2 is predicted once, on an ignored pixel: not counted
    global_accuracy, per_class = accuracy_from_counts(confusion_counts(pred, target, 3))
    assert global_accuracy == 3 / 4
    assert per_class[0] == 1 / 2 and per_class[1] == 1 and math.isnan(per_class[2])
    report = summary(*[np.array([0.5, 0.5, np.nan])] * 2, ["a", "b", "c"], confusion_counts(pred, target, 3))
    assert report["accuracy"]["class_average"] == 3 / 4 and report["accuracy"]["per_class"]["c"] is None
    assert "accuracy" not in summary(*[np.array([0.5, 0.5, np.nan])] * 2, ["a", "b", "c"])
