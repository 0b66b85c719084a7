"""Layered files (PSD, OpenRaster) read back by what GIMP-compatible readers use: psd-tools for
PSD, zipfile + ElementTree + Pillow for ORA. Layers are drawn (a soft disc, a half-transparent
square, a hidden photo-like original) so every expected pixel is known."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from xml.etree import ElementTree

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from psd_tools import PSDImage

from pipeline.errors import InvalidLayers
from pipeline.imaging.layered import (
    MAX_LAYERS,
    MAX_SIDE,
    THUMBNAIL_SIDE,
    Layer,
    encode_layered,
)

H, W = 96, 128
Pixels = npt.NDArray[np.uint8]


def _original() -> Pixels:
    """An opaque photo stand-in: gradients and noise."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:H, 0:W]
    rgba = np.empty((H, W, 4), np.uint8)
    rgba[..., 0] = x * 255 // W
    rgba[..., 1] = y * 255 // H
    rgba[..., 2] = rng.integers(0, 256, (H, W))
    rgba[..., 3] = 255
    return rgba


def _disc() -> Pixels:
    """The original's colours under a disc with a soft edge; RGB left under alpha 0 too."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    alpha = np.clip(20.5 - np.hypot(x - 40, y - 50), 0, 1) * 255
    rgba = _original()
    rgba[..., 3] = np.rint(alpha).astype(np.uint8)
    box = np.zeros((H, W), bool)
    box[30:71, 20:61] = True  # the box around alpha > 0: radius 20 around (40, 50)
    rgba[~box] = 0  # outside the box, nothing at all; inside it, colour under alpha 0 too
    return rgba


def _square() -> Pixels:
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[40:80, 70:120] = (30, 200, 90, 128)
    return rgba


def _layers() -> list[Layer]:
    return [Layer("main", _disc()), Layer("kept-2", _square()),
            Layer("original", _original(), visible=False)]


def _over(layers: Sequence[Layer]) -> npt.NDArray[np.float64]:
    """Reference composite of the visible layers (top first), straight alpha, in floats."""
    colour = np.zeros((H, W, 3))
    alpha = np.zeros((H, W, 1))
    for layer in reversed(layers):
        if not layer.visible:
            continue
        c = layer.rgba[..., :3] / 255.0
        a = layer.rgba[..., 3:] / 255.0
        out = a + alpha * (1 - a)
        colour = np.where(out > 0, (c * a + colour * alpha * (1 - a)) / np.maximum(out, 1e-12), 0)
        alpha = out
    return np.concatenate([colour, alpha], axis=2) * 255


def _assert_close_to_composite(got: Pixels, layers: Sequence[Layer], tol: float) -> None:
    """Alpha, and colour premultiplied by alpha (what one sees), within ``tol`` of 255."""
    want = _over(layers)
    assert got.shape == want.shape
    assert np.abs(got[..., 3] - want[..., 3]).max() <= tol
    got_seen = got[..., :3] * (got[..., 3:] / 255.0)
    want_seen = want[..., :3] * (want[..., 3:] / 255.0)
    assert np.abs(got_seen - want_seen).max() <= tol


def _placed(image: Image.Image, x: int, y: int) -> Pixels:
    canvas = np.zeros((H, W, 4), np.uint8)
    pixels = np.asarray(image.convert("RGBA"))
    canvas[y : y + pixels.shape[0], x : x + pixels.shape[1]] = pixels
    return canvas


# -- OpenRaster ----------------------------------------------------------------------------------


def _ora(layers: Sequence[Layer]) -> tuple[bytes, zipfile.ZipFile, ElementTree.Element]:
    data = encode_layered("ora", layers)
    archive = zipfile.ZipFile(io.BytesIO(data))
    return data, archive, ElementTree.fromstring(archive.read("stack.xml"))


def _open_png(archive: zipfile.ZipFile, name: str) -> Image.Image:
    image = Image.open(io.BytesIO(archive.read(name)))
    image.load()
    assert image.format == "PNG"
    return image


def test_ora_mimetype_comes_first_stored_so_file_sniffers_see_it() -> None:
    data, archive, _ = _ora(_layers())
    first = archive.infolist()[0]
    assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
    assert archive.read("mimetype") == b"image/openraster"
    # No extra field: the name and the type sit at fixed offsets of the local header.
    assert data[30:38] == b"mimetype" and data[38:54] == b"image/openraster"
    assert archive.testzip() is None


def test_ora_stack_lists_layers_top_first_with_names_and_visibility() -> None:
    _, archive, image = _ora(_layers())
    assert (image.get("w"), image.get("h")) == (str(W), str(H))
    stack = image.find("stack")
    assert stack is not None
    rows = [(e.get("name"), e.get("visibility"), e.get("opacity")) for e in stack.iter("layer")]
    assert rows == [("main", "visible", "1.0"), ("kept-2", "visible", "1.0"),
                    ("original", "hidden", "1.0")]
    members = set(archive.namelist())
    assert {"stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png"} <= members
    assert all(e.get("src") in members for e in stack.iter("layer"))


def test_ora_layer_pngs_are_cropped_and_equal_the_input_at_their_offsets() -> None:
    layers = _layers()
    _, archive, image = _ora(layers)
    elements = list(image.iter("layer"))
    for layer, element in zip(layers, elements, strict=True):
        png = _open_png(archive, element.get("src", ""))
        x, y = int(element.get("x", "")), int(element.get("y", ""))
        assert png.mode == "RGBA"
        assert np.array_equal(_placed(png, x, y), layer.rgba), layer.name
    main = _open_png(archive, elements[0].get("src", ""))
    assert main.size == (41, 41) and (elements[0].get("x"), elements[0].get("y")) == ("20", "30")


def test_ora_merged_image_is_the_composite_of_the_visible_layers() -> None:
    layers = _layers()
    _, archive, _ = _ora(layers)
    merged = _open_png(archive, "mergedimage.png")
    assert merged.mode == "RGBA" and merged.size == (W, H)
    _assert_close_to_composite(np.asarray(merged), layers, tol=1)
    thumbnail = _open_png(archive, "Thumbnails/thumbnail.png")
    assert max(thumbnail.size) <= THUMBNAIL_SIDE


def test_ora_thumbnail_fits_256_and_keeps_the_aspect() -> None:
    layer = Layer("main", np.full((300, 600, 4), 255, np.uint8))
    _, archive, _ = _ora([layer])
    assert _open_png(archive, "Thumbnails/thumbnail.png").size == (256, 128)


def test_ora_empty_layer_is_one_transparent_pixel_at_the_origin() -> None:
    layers = [Layer("main", _disc()), Layer("dropped-3-small", np.zeros((H, W, 4), np.uint8))]
    _, archive, image = _ora(layers)
    element = list(image.iter("layer"))[1]
    assert (element.get("x"), element.get("y")) == ("0", "0")
    png = _open_png(archive, element.get("src", ""))
    assert png.size == (1, 1) and png.getpixel((0, 0))[3] == 0


# -- PSD -----------------------------------------------------------------------------------------


def _psd(layers: Sequence[Layer]) -> PSDImage:
    return PSDImage.open(io.BytesIO(encode_layered("psd", layers)))


def test_psd_reads_back_names_order_and_visibility() -> None:
    psd = _psd(_layers())
    assert psd.size == (W, H)
    # psd-tools lists layers bottom first, as the file stores them.
    assert [(layer.name, layer.visible) for layer in reversed(list(psd))] == [
        ("main", True), ("kept-2", True), ("original", False)]


def test_psd_layer_pixels_equal_the_input_at_their_offsets() -> None:
    layers = _layers()
    psd = _psd(layers)
    for layer, read in zip(layers, reversed(list(psd)), strict=True):
        image = read.topil()
        assert image is not None and image.mode == "RGBA"
        left, top = read.offset
        assert np.array_equal(_placed(image, left, top), layer.rgba), layer.name
    assert read.offset == (0, 0) and psd[-1].offset == (20, 30)


def test_psd_has_a_composite_with_alpha_for_composite_only_viewers() -> None:
    layers = _layers()
    data = encode_layered("psd", layers)
    psd = PSDImage.open(io.BytesIO(data))
    assert psd.has_preview()
    # The spec's flag: the merged image's first alpha channel is its transparency.
    assert psd._record.layer_and_mask_information.layer_info.layer_count == -3
    merged = psd.topil()
    assert merged is not None and merged.mode == "RGBA"
    # Stored matted over white and unmatted on reading: off by rounding at most.
    _assert_close_to_composite(np.asarray(merged), layers, tol=2)
    # Pillow reads the same merged image (colour left over white; the alpha is what counts).
    pillow = Image.open(io.BytesIO(data))
    assert pillow.mode == "RGBA" and pillow.size == (W, H)
    assert np.abs(np.asarray(pillow)[..., 3] - _over(layers)[..., 3]).max() <= 2


def test_psd_empty_layer_keeps_its_name_and_has_no_pixels() -> None:
    psd = _psd([Layer("main", _disc()), Layer("dropped-3-small", np.zeros((H, W, 4), np.uint8))])
    empty = psd[0]
    assert empty.name == "dropped-3-small" and empty.bbox == (0, 0, 0, 0)
    assert empty.topil() is None


@pytest.mark.parametrize("name", ["kept-2 café", "kept-2 ✓", "x" * 255])
def test_psd_keeps_names_beyond_ascii_and_up_to_the_limit(name: str) -> None:
    psd = _psd([Layer(name, _square())])
    assert psd[0].name == name


@pytest.mark.parametrize("fmt", ["psd", "ora"])
def test_the_same_layers_give_the_same_bytes(fmt: str) -> None:
    assert encode_layered(fmt, _layers()) == encode_layered(fmt, _layers())  # type: ignore[arg-type]


# -- random layer sets ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_random_layer_sets_round_trip_in_both_formats(seed: int) -> None:
    rng = np.random.default_rng(seed)
    layers = []
    for index in range(int(rng.integers(1, 5))):
        rgba = np.zeros((H, W, 4), np.uint8)
        for _ in range(int(rng.integers(0, 3))):  # 0 rectangles: an empty layer
            x0, y0 = int(rng.integers(0, W)), int(rng.integers(0, H))
            x1, y1 = int(rng.integers(x0 + 1, W + 1)), int(rng.integers(y0 + 1, H + 1))
            rgba[y0:y1, x0:x1] = rng.integers(0, 256, (y1 - y0, x1 - x0, 4))
        layers.append(Layer(f"part-{index}", rgba, visible=bool(rng.integers(0, 2))))
    _, archive, image = _ora(layers)
    for layer, element in zip(layers, image.iter("layer"), strict=True):
        png = _open_png(archive, element.get("src", ""))
        placed = _placed(png, int(element.get("x", "")), int(element.get("y", "")))
        assert np.array_equal(placed, layer.rgba)
    _assert_close_to_composite(np.asarray(_open_png(archive, "mergedimage.png")), layers, tol=1)
    psd = _psd(layers)
    for layer, read in zip(layers, reversed(list(psd)), strict=True):
        assert (read.name, read.visible) == (layer.name, layer.visible)
        pil = read.topil()
        placed = np.zeros((H, W, 4), np.uint8) if pil is None else _placed(pil, *read.offset)
        assert np.array_equal(placed, layer.rgba)


# -- refusals ------------------------------------------------------------------------------------


def _refused(layers: Sequence[Layer], fmt: str = "ora") -> str:
    with pytest.raises(InvalidLayers) as info:
        encode_layered(fmt, layers)  # type: ignore[arg-type]
    assert info.value.reason == "invalid_layers"
    return info.value.message


def _blank(h: int = H, w: int = W) -> Pixels:
    return np.zeros((h, w, 4), np.uint8)


def test_refuses_no_layers() -> None:
    assert "at least one layer" in _refused([])


def test_refuses_more_layers_than_the_limit() -> None:
    tiny = [Layer(f"p{i}", _blank(1, 1)) for i in range(MAX_LAYERS + 1)]
    assert f"at most {MAX_LAYERS}" in _refused(tiny)


def test_refuses_layers_of_different_sizes() -> None:
    assert "same canvas" in _refused([Layer("a", _blank()), Layer("b", _blank(H, W + 1))])


@pytest.mark.parametrize("rgba", [np.zeros((H, W, 4), np.float32), np.zeros((H, W, 3), np.uint8),
                                  np.zeros((H, W), np.uint8)], ids=["float", "rgb", "grey"])
def test_refuses_pixels_that_are_not_uint8_rgba(rgba: npt.NDArray[np.generic]) -> None:
    assert "[H, W, 4] uint8" in _refused([Layer("a", rgba)])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "  ", "tab\there", "x" * 256])
def test_refuses_bad_names(name: str) -> None:
    assert "name" in _refused([Layer(name, _blank())])


def test_refuses_a_name_used_twice() -> None:
    assert "used twice" in _refused([Layer("main", _blank()), Layer("main", _blank())])


@pytest.mark.parametrize("fmt", ["psd", "ora"])
def test_refuses_a_side_over_the_psd_limit(fmt: str) -> None:
    assert str(MAX_SIDE) in _refused([Layer("main", _blank(1, MAX_SIDE + 1))], fmt)


def test_refuses_an_empty_canvas() -> None:
    assert "canvas" in _refused([Layer("main", _blank(0, 5))])


def test_unknown_format_is_the_callers_bug() -> None:
    with pytest.raises(ValueError, match="'psd' or 'ora'"):
        encode_layered("tiff", [Layer("main", _blank())])  # type: ignore[arg-type]
