"""Preprocessing: every format and mode reads to the same RGB, masks read as class indices, logits become masks."""

import io
import math
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from unet.preprocessing import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageError,
    MaskError,
    image_to_tensor,
    load_image,
    load_mask,
    logits_to_mask,
    logits_to_probabilities,
    mask_to_image,
    probabilities_to_mask,
    resize_for_model,
    tensor_to_image,
)

_Y, _X = np.mgrid[0:8, 0:12]
# A smooth 12x8 picture (96 colours, so a palette holds it exactly and JPEG barely changes it).
PICTURE = np.stack([20 * _X + 10, 25 * _Y + 20, 200 - 8 * _X - 6 * _Y], axis=-1).astype(np.uint8)  # (8, 12, 3)
GREY = PICTURE[..., 0]  # (8, 12)
GREY_16 = (GREY.astype(np.uint16) * 256 + (37 * _X + 11 * _Y) % 256).astype(np.uint16)  # value >> 8 == GREY


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims width x height: it can be measured but not decoded."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)  # IHDR width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR checksum
    return bytes(data)


def rgb() -> Image.Image:
    return Image.fromarray(PICTURE)


def grey_rgb() -> np.ndarray:
    return np.repeat(GREY[..., None], 3, axis=-1)


# name -> (source, expected RGB pixels, largest allowed difference)
LOSSLESS = {
    "png-rgb": lambda: (encode(rgb(), "PNG"), PICTURE),
    "png-l": lambda: (encode(Image.fromarray(GREY), "PNG"), grey_rgb()),
    "png-la-opaque": lambda: (encode(Image.fromarray(GREY).convert("LA"), "PNG"), grey_rgb()),
    "png-rgba-opaque": lambda: (encode(rgb().convert("RGBA"), "PNG"), PICTURE),
    "png-palette": lambda: (encode(rgb().quantize(256), "PNG"), PICTURE),
    "png-16bit": lambda: (encode(Image.fromarray(GREY_16), "PNG"), grey_rgb()),
    "tiff-rgb": lambda: (encode(rgb(), "TIFF"), PICTURE),
    "tiff-cmyk": lambda: (encode(rgb().convert("CMYK"), "TIFF"), PICTURE),
    "bmp": lambda: (encode(rgb(), "BMP"), PICTURE),
    "webp-lossless": lambda: (encode(rgb(), "WEBP", lossless=True), PICTURE),
    "image-i16b": lambda: (Image.frombytes("I;16B", (12, 8), GREY_16.astype(">u2").tobytes()), grey_rgb()),
    "image-i32": lambda: (Image.fromarray(GREY_16.astype(np.int32)), grey_rgb()),
    "image-1": lambda: (Image.fromarray(GREY >= 128), np.where(grey_rgb() >= 128, 255, 0)),
    "image-f": lambda: (Image.fromarray(GREY.astype(np.float32) + 0.25), grey_rgb()),  # truncated like convert("L")
}
LOSSY = {
    "jpeg": lambda: (encode(rgb(), "JPEG", quality=95, subsampling=0), 6),
    "jpeg-cmyk": lambda: (encode(rgb().convert("CMYK"), "JPEG", quality=95), 4),
    "image-ycbcr": lambda: (rgb().convert("YCbCr"), 3),
}


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_formats_and_modes_load_to_the_same_rgb(name):
    source, expected = LOSSLESS[name]()
    image = load_image(source)
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), expected)


@pytest.mark.parametrize("name", LOSSY)
def test_lossy_formats_load_close_to_the_original(name):
    source, tolerance = LOSSY[name]()
    image = load_image(source)
    assert image.mode == "RGB" and image.size == (12, 8)
    assert np.abs(np.asarray(image, dtype=int) - PICTURE).max() <= tolerance


def test_paths_and_file_objects_load(tmp_path):
    path = tmp_path / "picture.png"
    rgb().save(path)
    for source in (path, str(path), io.BytesIO(path.read_bytes())):
        np.testing.assert_array_equal(np.asarray(load_image(source)), PICTURE)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")


def test_transparency_is_composited_onto_white():
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: unchanged
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: white
    rgba[0, 2] = (0, 0, 0, 128)  # half: 255 * (1 - 128 / 255) = 127
    image = load_image(encode(Image.fromarray(rgba), "PNG"))
    np.testing.assert_array_equal(np.asarray(image)[0], [[10, 20, 30], [255, 255, 255], [127, 127, 127]])


def test_palette_and_grey_transparency_become_white():
    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 200, 0, 0])
    palette.info["transparency"] = 0
    np.testing.assert_array_equal(np.asarray(load_image(encode(palette, "PNG")))[0], [[255, 255, 255], [200, 0, 0]])
    grey_alpha = Image.fromarray(np.array([[[50, 0], [50, 255]]], dtype=np.uint8), mode="LA")
    np.testing.assert_array_equal(np.asarray(load_image(grey_alpha))[0], [[255, 255, 255], [50, 50, 50]])


def exif_rotated(pixels: np.ndarray) -> bytes:
    """A PNG storing `pixels` with EXIF orientation 6: viewers rotate it 90 degrees clockwise."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.fromarray(pixels), "PNG", exif=exif)


def test_exif_orientation_is_applied_to_images_and_masks():
    stored = np.array([[10, 20, 30], [40, 50, 60]], dtype=np.uint8)
    upright = np.array([[40, 10], [50, 20], [60, 30]], dtype=np.uint8)  # stored, turned clockwise
    np.testing.assert_array_equal(np.asarray(load_image(exif_rotated(stored)))[..., 0], upright)
    np.testing.assert_array_equal(load_mask(exif_rotated(stored // 10)), upright // 10)


def test_caller_image_is_neither_closed_nor_changed():
    image = rgb().convert("RGBA")
    load_image(image)
    assert image.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(image)[..., :3], PICTURE)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (b"this is a text file, not a picture", "not an image"),
        (encode(rgb(), "PNG")[:-40], "truncated or corrupt"),
        (encode(rgb(), "JPEG")[:-60], "truncated or corrupt"),
        (png_header_only(8000, 6250), "8000x6250 = 50,000,000 pixels, more than the 40,000,000 allowed"),
        (png_header_only(20000, 20000), "400,000,000 pixels, more than the 40,000,000 allowed; downscale it first"),
        (Image.new("RGB", (0, 4)), "empty"),
    ],
    ids=["text", "truncated-png", "truncated-jpeg", "over-max-pixels", "decompression-bomb", "zero-size"],
)
def test_unreadable_images_raise_image_error(source, message):
    with pytest.raises(ImageError, match=message):
        load_image(source)


def test_max_pixels_is_checked():
    assert load_image(rgb(), max_pixels=96).size == (12, 8)
    with pytest.raises(ImageError, match="12x8 = 96 pixels, more than the 95 allowed"):
        load_image(encode(rgb(), "PNG"), max_pixels=95)


def test_image_to_tensor_normalizes_with_imagenet_statistics():
    tensor = image_to_tensor(Image.fromarray(np.array([[[255, 0, 51]]], dtype=np.uint8)))
    assert tensor.shape == (3, 1, 1) and tensor.dtype == torch.float32
    expected = [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], -IMAGENET_MEAN[1] / IMAGENET_STD[1], (0.2 - 0.406) / 0.225]
    torch.testing.assert_close(tensor.flatten(), torch.tensor(expected))


def test_tensor_round_trip_is_exact():
    tensor = image_to_tensor(rgb())
    assert tensor.shape == (3, 8, 12)
    np.testing.assert_array_equal(np.asarray(tensor_to_image(tensor)), PICTURE)
    with pytest.raises(ValueError, match="load_image"):
        image_to_tensor(rgb().convert("RGBA"))


def grey_png(values: np.ndarray) -> bytes:
    return encode(Image.fromarray(np.asarray(values, dtype=np.uint8)), "PNG")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([[0, 255, 255]], [[0, 1, 1]]),  # binary 0/255
        ([[255, 255]], [[1, 1]]),  # all foreground
        ([[0, 0]], [[0, 0]]),  # all background
        ([[0, 1, 2]], [[0, 1, 2]]),  # class indices
        ([[0, 1, 255]], [[0, 1, IGNORE_INDEX]]),  # 255 next to other classes is "ignore"
    ],
)
def test_grey_masks_read_as_class_indices(values, expected):
    np.testing.assert_array_equal(load_mask(grey_png(values), num_labels=3), expected)


def test_palette_mode_1_la_and_grey_rgb_masks():
    palette = Image.fromarray(np.array([[0, 1, 2, 255]], dtype=np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [224, 224, 192] * 253)
    np.testing.assert_array_equal(load_mask(encode(palette, "PNG"), num_labels=3), [[0, 1, 2, 255]])
    voc_border = Image.fromarray(np.array([[0, 255]], dtype=np.uint8), mode="P")  # palette 255 stays "ignore"
    np.testing.assert_array_equal(load_mask(voc_border), [[0, 255]])
    np.testing.assert_array_equal(load_mask(Image.fromarray(np.array([[True, False]]))), [[1, 0]])
    grey_alpha = Image.fromarray(np.array([[[255, 0], [0, 255]]], dtype=np.uint8), mode="LA")  # alpha ignored
    np.testing.assert_array_equal(load_mask(grey_alpha), [[1, 0]])
    grey_as_rgb = Image.fromarray(np.array([[0, 255, 255]], dtype=np.uint8)).convert("RGB")
    np.testing.assert_array_equal(load_mask(encode(grey_as_rgb, "PNG")), [[0, 1, 1]])


def test_array_masks_follow_the_same_rules():
    np.testing.assert_array_equal(load_mask(np.array([[0, 255]], dtype=np.int64)), [[0, 1]])
    np.testing.assert_array_equal(load_mask(np.array([[True, False]])), [[1, 0]])
    assert load_mask(np.array([[0, 2]])).dtype == np.uint8
    with pytest.raises(MaskError, match="must be integers"):
        load_mask(np.array([[0.0, 1.0]]))


def test_colour_masks_are_refused():
    colour = np.array([[[255, 0, 0], [0, 0, 0]]], dtype=np.uint8)
    with pytest.raises(MaskError, match=r"colour masks must be converted to class indices \(one value a class\)"):
        load_mask(encode(Image.fromarray(colour), "PNG"))
    with pytest.raises(MaskError, match="colour masks"):
        load_mask(colour)


def test_out_of_range_values_are_named():
    with pytest.raises(MaskError) as error:
        load_mask(grey_png([[0, 1, 7, 1]]), num_labels=2)
    assert str(error.value) == (
        "mask has values [0, 1, 7]; this model predicts classes 0..1. Store one class index per pixel (0..1), "
        "or 0/255 for a binary mask; 255 marks pixels to ignore."
    )
    with pytest.raises(MaskError) as error:  # CamVid's own annotations mark unlabelled pixels 11
        load_mask(grey_png([[0, 10, 11]]), num_labels=11)
    assert str(error.value).endswith("If 11 marks unlabelled pixels (as in CamVid's own annotations), set those "
                                     "pixels to 255.")  # fmt: skip
    with pytest.raises(MaskError, match="values from 0 to 300"):
        load_mask(Image.fromarray(np.array([[0, 300]], dtype=np.uint16)))
    with pytest.raises(ImageError, match="not an image"):
        load_mask(b"not a mask")


def test_a_mask_saved_as_jpeg_is_told_to_use_png(tmp_path):
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[8:, 1::2] = 10  # classes 0 and 10 of 11, with edges at every pixel of the lower half
    Image.fromarray(mask).save(tmp_path / "mask.png", quality=70, format="JPEG")  # any name: the bytes tell
    with pytest.raises(MaskError, match=r"This mask is a JPEG: .* Save masks as PNG\.$"):
        load_mask(tmp_path / "mask.png", num_labels=11)


def test_mask_to_image_round_trips_through_png():
    mask = np.array([[0, 1, 2], [2, 1, IGNORE_INDEX]], dtype=np.uint8)
    image = mask_to_image(mask)
    assert image.mode == "L"
    np.testing.assert_array_equal(load_mask(encode(image, "PNG"), num_labels=3), mask)


def test_binary_logits_are_resized_before_the_sigmoid():
    logits = torch.tensor([[[-4.0, 4.0]]])  # (1, 1, 2)
    probabilities = logits_to_probabilities(logits, (1, 4))
    assert probabilities.shape == (2, 1, 4)
    # Bilinear, align_corners=False, 2 -> 4 samples at x = -0.25, 0.25, 0.75, 1.25: logits -4, -2, 2, 4.
    foreground = torch.sigmoid(torch.tensor([-4.0, -2.0, 2.0, 4.0]))
    torch.testing.assert_close(probabilities[1, 0], foreground)
    torch.testing.assert_close(probabilities[0, 0], 1 - foreground)


def test_multiclass_logits_give_softmax_probabilities():
    constant = torch.tensor([0.0, math.log(2), math.log(5)]).view(3, 1, 1).expand(3, 2, 3)
    probabilities = logits_to_probabilities(constant, (4, 6))
    assert probabilities.shape == (3, 4, 6)
    torch.testing.assert_close(probabilities[:, 2, 5], torch.tensor([1 / 8, 2 / 8, 5 / 8]))
    batched = logits_to_probabilities(torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)), (9, 11))
    assert batched.shape == (2, 3, 9, 11)
    torch.testing.assert_close(batched.sum(dim=1), torch.ones(2, 9, 11))
    with pytest.raises(ValueError, match="expected logits"):
        logits_to_probabilities(torch.zeros(4, 4), (4, 4))


def test_probabilities_to_mask_thresholds_binary_and_argmaxes_multiclass():
    foreground = torch.tensor([[0.2, 0.5, 0.7]])
    binary = torch.stack([1 - foreground, foreground])  # (2, 1, 3)
    np.testing.assert_array_equal(probabilities_to_mask(binary), [[0, 1, 1]])
    np.testing.assert_array_equal(probabilities_to_mask(binary, threshold=0.6), [[0, 0, 1]])
    three = torch.tensor([[[0.5, 0.1]], [[0.2, 0.3]], [[0.3, 0.6]]])  # (3, 1, 2)
    mask = probabilities_to_mask(three, threshold=0.99)  # ignored with more than two labels
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, [[0, 2]])
    assert probabilities_to_mask(torch.stack([binary, binary])).shape == (2, 1, 3)


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [((400, 100), 200, (200, 50)), ((100, 300), 150, (50, 150)), ((333, 100), 100, (100, 30))],
)
def test_resize_for_model_keeps_the_aspect_ratio(size, max_side, expected):
    assert resize_for_model(Image.new("RGB", size), max_side).size == expected


def test_resize_for_model_leaves_small_images_alone():
    image = rgb()
    assert resize_for_model(image, 12) is image
    assert resize_for_model(image, None) is image


def test_logits_to_mask_thresholds_one_channel_at_zero_and_arg_maxes_more() -> None:
    binary = torch.tensor([[[[-0.1, 0.0, 2.0]]]])  # (1, 1, 1, 3): probability 0.5 exactly is not foreground
    assert logits_to_mask(binary).tolist() == [[[0, 0, 1]]]
    three = torch.tensor([[[[1.0, 0.0]], [[0.0, 3.0]], [[2.0, 1.0]]]])  # (1, 3, 1, 2)
    assert logits_to_mask(three).tolist() == [[[2, 1]]]
