"""Contact sheets: each input beside its cut-out(s) over a checkerboard, so a person can judge
the results at a glance. Pure: Pillow images in, one image out.

``contact_sheet`` is the demo's two columns; ``grid_sheet`` takes any number of titled
columns, and a cell may be a note (a cut-out that is not available) instead of a picture."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

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


def on_checkerboard(img: Image.Image) -> Image.Image:
    """``img`` fitted into a TILE square and, if it has alpha, laid over a checkerboard (RGB)."""
    fitted = _fit(img)
    if fitted.mode not in ("RGBA", "LA", "PA"):
        return fitted.convert("RGB")
    fitted = fitted.convert("RGBA")
    backdrop = checkerboard(fitted.size)
    backdrop.paste(fitted, (0, 0), fitted)
    return backdrop


Cell: TypeAlias = Image.Image | str
"""A picture (RGBA ones go over a checkerboard) or a note drawn in its place."""


def grid_sheet(headers: Sequence[str], rows: Sequence[tuple[str, Sequence[Cell]]]) -> Image.Image:
    """A sheet with one column per header and, per row, a label line above its cells.

    ``rows``: (label, cells), ``len(cells) == len(headers)``; each picture is fitted into a
    TILE square, and a row is as tall as its tallest picture (a row of notes only: TILE)."""
    font = ImageFont.load_default()
    for i, (_, cells) in enumerate(rows):
        if len(cells) != len(headers):
            raise ValueError(f"row {i} has {len(cells)} cells for {len(headers)} columns")
    tiles = [[c if isinstance(c, str) else on_checkerboard(c) for c in cells] for _, cells in rows]
    heights = [max((t.height for t in row if not isinstance(t, str)), default=TILE)
               for row in tiles]
    width = PAD + len(headers) * (TILE + PAD)
    height = PAD + LABEL + sum(h + LABEL + PAD for h in heights)
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    for j, header in enumerate(headers):
        draw.text((PAD + j * (TILE + PAD), PAD), header, fill=(0, 0, 0), font=font)
    top = PAD + LABEL
    for (label, _), row, row_height in zip(rows, tiles, heights, strict=True):
        draw.text((PAD, top), label, fill=(30, 30, 30), font=font)
        top += LABEL
        for j, tile in enumerate(row):
            x = PAD + j * (TILE + PAD)
            if isinstance(tile, str):
                draw.rectangle((x, top, x + TILE - 1, top + row_height - 1),
                               outline=(180, 180, 180))
                draw.multiline_text((x + 8, top + row_height // 2 - 10), tile,
                                    fill=(160, 0, 0), font=font)
            else:
                sheet.paste(tile, (x, top))
        top += row_height + PAD
    return sheet


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
        sheet.paste(on_checkerboard(cut.convert("RGBA")), (x, top))
    return sheet
