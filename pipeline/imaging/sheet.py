"""A contact sheet: each input beside its cut-out over a checkerboard, so a person can judge
the results at a glance. Pure: Pillow images in, one image out."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

TILE = 256
PAD = 12
LABEL = 18


def checkerboard(size: tuple[int, int], cell: int = 16) -> Image.Image:
    board = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(board)
    for y in range(0, size[1], cell):
        for x in range((y // cell % 2) * cell, size[0], 2 * cell):
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(205, 205, 205))
    return board


def _fit(img: Image.Image) -> Image.Image:
    img = img.copy()
    img.thumbnail((TILE, TILE), Image.Resampling.LANCZOS)
    return img


def contact_sheet(rows: Sequence[tuple[str, Image.Image, Image.Image | None]]) -> Image.Image:
    """``rows``: (label, input, cut-out or None when it failed)."""
    font = ImageFont.load_default()
    width = PAD * 3 + TILE * 2
    height = PAD + len(rows) * (TILE + LABEL + PAD)
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    for i, (label, source, cut) in enumerate(rows):
        top = PAD + i * (TILE + LABEL + PAD)
        draw.text((PAD, top), label, fill=(30, 30, 30), font=font)
        top += LABEL
        sheet.paste(_fit(source.convert("RGB")), (PAD, top))
        x = PAD * 2 + TILE
        if cut is None:
            draw.text((x, top + TILE // 2), "failed", fill=(200, 0, 0), font=font)
            continue
        cut = _fit(cut.convert("RGBA"))
        backdrop = checkerboard(cut.size)
        backdrop.paste(cut, (0, 0), cut)
        sheet.paste(backdrop, (x, top))
    return sheet
