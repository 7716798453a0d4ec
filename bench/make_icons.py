"""Draw the web app's PNG icons (static/img/icon-*.png) from the same two circles as static/favicon.svg.

Not a benchmark: a one-off tool kept here so the icons can be redrawn (a new accent, a new size). The PNGs are
committed; run this only to change them:

    .venv/bin/python bench/make_icons.py

- icon-192.png, icon-512.png: the favicon's circles on a transparent background ("any" purpose).
- icon-maskable-512.png: the same mark on the dark theme's background, filling the square, the mark inside the
  central 80 % circle a launcher's mask always keeps ("maskable" purpose).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

STATIC = Path(__file__).resolve().parent.parent / "static"
ACCENT = (0x6A, 0x9F, 0xFF, 255)  # static/favicon.svg's outer circle, the dark theme's accent
DARK = (0x0B, 0x0B, 0x0C, 255)  # its inner circle and the dark theme's --bg
SUPERSAMPLE = 4  # drawn large and scaled down: smooth edges without an anti-aliasing renderer


def mark(size: int, *, outer: float, inner: float, background: tuple[int, int, int, int] | None) -> Image.Image:
    """Two centred circles, radii as fractions of the side (the favicon's are 14/32 and 4/32)."""
    big = size * SUPERSAMPLE
    image = Image.new("RGBA", (big, big), background or (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    c = big / 2
    for radius, colour in ((outer * big, ACCENT), (inner * big, DARK)):
        draw.ellipse((c - radius, c - radius, c + radius, c + radius), fill=colour)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    out = STATIC / "img"
    for size in (192, 512):
        mark(size, outer=14 / 32, inner=4 / 32, background=None).save(out / f"icon-{size}.png", optimize=True)
    # Maskable: the safe zone is a circle of radius 0.4; the mark keeps well inside it.
    mark(512, outer=0.3, inner=0.3 * 4 / 14, background=DARK).save(out / "icon-maskable-512.png", optimize=True)
    for path in sorted(out.glob("icon-*.png")):
        print(path.relative_to(STATIC.parent), path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
