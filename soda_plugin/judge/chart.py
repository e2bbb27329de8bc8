"""A grouped bar chart of the headline (paired) scores (one group per benchmark, one bar per
model, the 95 % interval as an error bar, a dashed line at 50 = parity with the reference),
drawn with Pillow: matplotlib is not part of the training environment, Pillow is (transformers)."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .grid import benchmark_title as _title, headline, score_grid

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]
WIDTH, HEIGHT = 900, 500
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 50, 60


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _axis_range(document: dict[str, Any]) -> tuple[float, float]:
    """Tens around every interval, 50 included: differences of a few points stay visible."""
    values = [v for r in document["results"] for v in (headline(r)[k] for k in ("score", "ci_low", "ci_high"))
              if v is not None]
    values.append(50.0)
    low = max(0.0, math.floor((min(values) - 2) / 10) * 10)
    high = min(100.0, math.ceil((max(values) + 2) / 10) * 10)
    return low, high


def write_bar_chart(document: dict[str, Any], path: str | Path) -> Path:
    from PIL import Image, ImageDraw

    grid, benchmarks = score_grid(document), document["benchmarks"]
    models = list(grid)
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    low, high = _axis_range(document)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y_of(value: float) -> float:
        return TOP + plot_h * (1 - (value - low) / (high - low))

    font, title_font = _font(13), _font(16)
    draw.text((LEFT, 15), f"GPT-4o Score (judge {document['protocol']['judge_model']})", fill="black", font=title_font)
    for tick in range(int(low), int(high) + 1, 10):
        draw.line([(LEFT, y_of(tick)), (LEFT + plot_w, y_of(tick))], fill="#E5E5E5")
        draw.text((LEFT - 30, y_of(tick) - 7), f"{tick}", fill="black", font=font)
    for x in range(LEFT, LEFT + plot_w, 12):  # parity with the reference
        draw.line([(x, y_of(50)), (x + 6, y_of(50))], fill="#555555", width=1)

    group_w = plot_w / max(1, len(benchmarks))
    bar_w = group_w * 0.8 / max(1, len(models))
    for g, benchmark in enumerate(benchmarks):
        x0 = LEFT + g * group_w + group_w * 0.1
        draw.text((x0 + group_w * 0.4 - 20, TOP + plot_h + 10), _title(benchmark), fill="black", font=font)
        for m, model in enumerate(models):
            record = grid[model].get(benchmark)
            record = None if record is None else headline(record)
            if record is None or record["score"] is None:
                continue
            left = x0 + m * bar_w
            draw.rectangle([left + 1, y_of(record["score"]), left + bar_w - 1, y_of(low)],
                           fill=PALETTE[m % len(PALETTE)])
            middle = left + bar_w / 2
            draw.line([(middle, y_of(record["ci_low"])), (middle, y_of(record["ci_high"]))], fill="black", width=2)
            for end in (record["ci_low"], record["ci_high"]):
                draw.line([(middle - 4, y_of(end)), (middle + 4, y_of(end))], fill="black", width=2)
    draw.line([(LEFT, TOP), (LEFT, TOP + plot_h), (LEFT + plot_w, TOP + plot_h)], fill="black")
    for m, model in enumerate(models):  # legend
        top = TOP + 10 + m * 22
        draw.rectangle([WIDTH - RIGHT + 20, top, WIDTH - RIGHT + 34, top + 14], fill=PALETTE[m % len(PALETTE)])
        draw.text((WIDTH - RIGHT + 42, top), model, fill="black", font=font)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        image.save(handle, format="PNG")
    os.replace(tmp, path)
    return path
