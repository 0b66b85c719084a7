"""Sample product photos drawn from code, so the demo needs no data set and no download.

Each is a plain object on a studio-like background (soft gradient, contact shadow), the kind of
picture a catalog holds. Pure: returns Pillow images.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFilter

Size = tuple[int, int]
W, H = 640, 640


def _studio(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    grad = Image.linear_gradient("L").resize((W, H))
    return Image.composite(Image.new("RGB", (W, H), bottom), Image.new("RGB", (W, H), top), grad)


def _shadow(img: Image.Image, box: tuple[int, int, int, int], strength: int = 90) -> None:
    shadow = Image.new("L", (W, H), 0)
    ImageDraw.Draw(shadow).ellipse(box, fill=strength)
    shadow = shadow.filter(ImageFilter.GaussianBlur(18))
    img.paste(Image.new("RGB", (W, H), (40, 40, 40)), (0, 0), shadow)


def _shaded_ellipse(img: Image.Image, box: tuple[int, int, int, int],
                    colour: tuple[int, int, int]) -> None:
    """An ellipse lit from the top left: a radial highlight over a flat colour."""
    x0, y0, x1, y1 = box
    mask = Image.new("L", (W, H), 0)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    w, h = x1 - x0, y1 - y0
    # The gradient is dark at its centre: centre it up and left of the middle, spread wide.
    light = Image.radial_gradient("L").resize((w * 2, h * 2))
    shade = Image.new("L", (W, H), 255)
    shade.paste(light, (x0 - w * 2 // 3, y0 - h * 2 // 3))
    dark = Image.new("RGB", (W, H), tuple(c // 3 for c in colour))
    lit = Image.composite(dark, Image.new("RGB", (W, H), colour), shade)
    img.paste(lit, (0, 0), mask)


def sneaker() -> Image.Image:
    img = _studio((245, 245, 245), (215, 215, 218))
    _shadow(img, (110, 430, 560, 480))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((110, 400, 560, 450), 22, fill=(250, 250, 250), outline=(170, 170, 170),
                        width=3)
    d.polygon([(120, 405), (150, 250), (300, 220), (390, 300), (545, 340), (555, 405)],
              fill=(200, 30, 40))
    d.polygon([(150, 250), (210, 180), (300, 220)], fill=(160, 20, 30))
    for i in range(5):
        d.line((230 + 25 * i, 250 + 10 * i, 270 + 25 * i, 235 + 10 * i), fill=(250, 250, 250),
               width=6)
    return img


def mug() -> Image.Image:
    img = _studio((255, 255, 255), (230, 232, 236))
    _shadow(img, (170, 470, 470, 520))
    d = ImageDraw.Draw(img)
    d.ellipse((390, 260, 520, 420), outline=(30, 80, 170), width=26)
    d.rectangle((170, 190, 430, 490), fill=(40, 100, 200))
    d.ellipse((170, 160, 430, 220), fill=(25, 70, 150))
    d.ellipse((170, 460, 430, 520), fill=(40, 100, 200))
    d.rectangle((200, 200, 230, 470), fill=(90, 150, 235))
    return img


def bottle() -> Image.Image:
    img = _studio((236, 228, 214), (205, 196, 180))
    _shadow(img, (230, 560, 410, 600))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((230, 260, 410, 585), 40, fill=(30, 120, 70))
    d.polygon([(270, 265), (290, 150), (350, 150), (370, 265)], fill=(30, 120, 70))
    d.rectangle((292, 95, 348, 150), fill=(200, 160, 40))
    d.rectangle((245, 350, 395, 470), fill=(245, 240, 225))
    d.rectangle((255, 300, 270, 560), fill=(80, 170, 110))
    return img


def ball() -> Image.Image:
    img = _studio((226, 238, 250), (190, 205, 225))
    _shadow(img, (180, 520, 460, 570), 120)
    _shaded_ellipse(img, (160, 180, 480, 500), (245, 150, 20))
    return img


def watch() -> Image.Image:
    img = _studio((250, 250, 250), (225, 225, 225))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((255, 40, 385, 600), 30, fill=(70, 45, 30))
    for y in range(80, 600, 60):
        d.ellipse((312, y, 328, y + 16), fill=(40, 25, 15))
    d.ellipse((185, 185, 455, 455), fill=(180, 180, 190))
    d.ellipse((205, 205, 435, 435), fill=(20, 30, 50))
    d.line((320, 320, 320, 230), fill=(240, 240, 240), width=8)
    d.line((320, 320, 390, 350), fill=(240, 240, 240), width=6)
    return img


def lamp() -> Image.Image:
    img = _studio((248, 246, 240), (222, 218, 210))
    _shadow(img, (200, 560, 440, 600))
    d = ImageDraw.Draw(img)
    d.ellipse((200, 540, 440, 590), fill=(50, 50, 55))
    d.rectangle((310, 260, 330, 560), fill=(70, 70, 75))
    d.polygon([(200, 290), (260, 110), (380, 110), (440, 290)], fill=(240, 200, 90))
    d.line((260, 110, 380, 110), fill=(200, 160, 60), width=6)
    return img


SAMPLES: dict[str, Callable[[], Image.Image]] = {
    "footwear/sneaker": sneaker, "kitchen/mug": mug, "kitchen/bottle": bottle,
    "toys/ball": ball, "accessories/watch": watch, "home/lamp": lamp,
}
