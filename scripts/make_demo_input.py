"""Make the bundled demo input: hand emoji from Noto Color Emoji moving over a backdrop.

Run once by a maintainer (needs Pillow and Debian's fonts-noto-color-emoji, which the project
itself does not need); the outputs are committed under demo/. Noto Color Emoji is under the
SIL Open Font License 1.1, which allows images rendered with the font to be redistributed.

    python scripts/make_demo_input.py --out demo
"""

import argparse
import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
WIDTH, HEIGHT, FPS = 640, 480, 30
# (emoji, skin-tone modifier) of the hands that appear, in order.
HANDS = [("\u270b", "\U0001f3fc"), ("\U0001f590", "\U0001f3fd"), ("\U0001f596", "\U0001f3fb"),
         ("\U0001f91a", "\U0001f3fe")]
FRAMES_PER_HAND = 45


def glyph(text: str) -> np.ndarray:
    """RGBA render of an emoji at the font's native 109 px size."""
    font = ImageFont.truetype(FONT, 109)
    image = Image.new("RGBA", (136, 128), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((0, 0), text, font=font, embedded_color=True)
    return cv2.cvtColor(np.asarray(image), cv2.COLOR_RGBA2BGRA)


def backdrop(rng: np.random.Generator) -> np.ndarray:
    """A wall-like background: a vertical gradient with a few soft rectangles."""
    ramp = np.linspace(0.8, 1.0, HEIGHT)[:, None, None]
    image = (np.array([150, 160, 170]) * ramp * np.ones((HEIGHT, WIDTH, 3))).astype(np.uint8)
    for _ in range(6):
        x, y = rng.integers(0, WIDTH - 80), rng.integers(0, HEIGHT - 80)
        w, h = rng.integers(40, 160, 2)
        colour = tuple(int(c) for c in rng.integers(80, 220, 3))
        cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), colour, -1)
    return cv2.GaussianBlur(image, (9, 9), 0)


def paste(frame: np.ndarray, rgba: np.ndarray, centre, scale: float, angle_deg: float) -> None:
    h, w = rgba.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, scale)
    m[:, 2] += np.array(centre) - np.array([w / 2, h / 2])
    warped = cv2.warpAffine(rgba, m, (WIDTH, HEIGHT), flags=cv2.INTER_CUBIC)
    alpha = warped[:, :, 3:4].astype(np.float32) / 255
    frame[:] = (alpha * warped[:, :, :3] + (1 - alpha) * frame).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    background = backdrop(rng)
    glyphs = [glyph(e + tone) for e, tone in HANDS]
    video = out / "emoji_hands.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for i in range(FRAMES_PER_HAND * len(HANDS)):
        hand, t = divmod(i, FRAMES_PER_HAND)
        phase = 2 * math.pi * t / FRAMES_PER_HAND
        frame = background.copy()
        centre = (WIDTH / 2 + 120 * math.sin(phase), HEIGHT / 2 + 40 * math.sin(2 * phase))
        paste(frame, glyphs[hand], centre, 1.5 + 0.3 * math.cos(phase), 15 * math.sin(phase))
        writer.write(frame)
    writer.release()
    print(f"wrote {video} ({video.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
