"""The latent space as an interactive page: the UMAP of mu, each point a particle.

One self-contained HTML file (Bokeh, with BokehJS inlined: it opens offline, from a cluster's
file system or an e-mail attachment). Hovering a point shows its class, split, nearest seen
class, novelty and a thumbnail of the particle (the central z slice of a subtomogram, or the
image); a menu colours the points by class, split or novelty. At most :data:`MAX_POINTS`
particles, a seeded draw, are shown, so the page stays a few MB whatever the study's size.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
from bokeh.embed import file_html
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, CustomJS, Div, HoverTool, Select
from bokeh.palettes import Category10, Category20, Viridis256
from bokeh.plotting import figure
from bokeh.resources import INLINE
from PIL import Image

from cryoavae.core.atomic import write_text_atomic
from cryoavae.particles import ParticleImages

MAX_POINTS = 2000
THUMBNAIL_PX = 64
SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#9467bd", "unseen": "#2ca02c"}
TOOLTIP = """
<div style="width: 180px">
  <img src="@thumbnail" width="96" height="96" style="image-rendering: pixelated"
       alt="particle @image">
  <div><b>@class_name</b> (@split)</div>
  <div>nearest seen: @nearest (cosine @cosine{0.000})</div>
  <div>novelty @novelty{0.000} @flag</div>
</div>
"""


def thumbnails(images: ParticleImages, rows: np.ndarray, batch: int = 256) -> list[str]:
    """PNG data URIs of particles ``rows``: the central z slice (3-D) or the image (2-D),
    scaled to the 1st-99th percentile of its own values, resized to THUMBNAIL_PX."""
    uris = []
    for start in range(0, len(rows), batch):
        block = images.gather(rows[start : start + batch])  # (b, [d,] h, w)
        if block.ndim == 4:
            block = block[:, block.shape[1] // 2]
        low = np.percentile(block, 1, axis=(1, 2), keepdims=True)
        high = np.percentile(block, 99, axis=(1, 2), keepdims=True)
        scaled = np.clip((block - low) / np.maximum(high - low, 1e-12), 0, 1)
        for picture in (scaled * 255).astype(np.uint8):  # one PNG per shown particle
            buffer = io.BytesIO()
            thumb = Image.fromarray(picture).resize((THUMBNAIL_PX, THUMBNAIL_PX), Image.NEAREST)
            thumb.save(buffer, format="PNG")
            uris.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    return uris


def _class_colours(names: np.ndarray, classes: list[str]) -> np.ndarray:
    palette = Category10[10] if len(classes) <= 10 else Category20[20]
    lookup = {c: palette[i % len(palette)] for i, c in enumerate(classes)}
    return np.array([lookup.get(n, "#7f7f7f") for n in names], dtype=object)


def _novelty_colours(novelty: np.ndarray) -> np.ndarray:
    span = max(float(np.nanmax(novelty)) if len(novelty) else 0.0, 1e-12)
    index = np.clip((np.nan_to_num(novelty) / span * 255).astype(int), 0, 255)
    return np.asarray(Viridis256, dtype=object)[index]


def write_latent_explorer(
    path: str | os.PathLike,
    latents: pd.DataFrame,
    umap_xy: pd.DataFrame,
    assignments: pd.DataFrame,
    images: ParticleImages,
    class_names: list[str],
    seed: int,
    title: str,
) -> int:
    """Write the page for ``latents`` (rows line up with ``umap_xy``, ``assignments`` — columns
    of :func:`cryoavae.inference.annotate.class_assignments` — and ``images``); return the points
    shown."""
    n = len(latents)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, MAX_POINTS), replace=False)) if n else np.arange(0)
    names = latents["class_name"].astype(str).to_numpy()[rows]
    novelty = assignments["cryoavaeNovelty"].to_numpy(np.float64)[rows]
    flag = np.where(assignments["cryoavaeIsNovel"].to_numpy()[rows] > 0, "(flagged novel)", "")
    colours = {
        "class": _class_colours(names, [c for c in class_names if c in set(names)]),
        "split": np.array(
            [SPLIT_COLOURS.get(s, "#7f7f7f") for s in latents["split"].astype(str).iloc[rows]],
            dtype=object,
        ),
        "novelty": _novelty_colours(novelty),
    }
    source = ColumnDataSource(
        {
            "x": umap_xy["umap_x"].to_numpy()[rows],
            "y": umap_xy["umap_y"].to_numpy()[rows],
            "image": latents["image"].astype(str).to_numpy()[rows],
            "class_name": names,
            "split": latents["split"].astype(str).to_numpy()[rows],
            "nearest": assignments["cryoavaePredictedClass"].to_numpy()[rows],
            "cosine": assignments["cryoavaeCentroidCosine"].to_numpy()[rows],
            "novelty": novelty,
            "flag": flag,
            "thumbnail": thumbnails(images, rows),
            "colour": colours["class"],
            **{f"colour_{k}": v for k, v in colours.items()},
        }
    )
    plot = figure(
        title=title,
        width=760,
        height=640,
        tools="pan,wheel_zoom,box_zoom,reset",
        x_axis_label="UMAP 1",
        y_axis_label="UMAP 2",
    )
    plot.scatter("x", "y", source=source, size=7, color="colour", alpha=0.8, name="particles")
    plot.add_tools(HoverTool(tooltips=TOOLTIP))
    menu = Select(title="Colour by", value="class", options=list(colours))
    menu.js_on_change(
        "value",
        CustomJS(
            args={"source": source},
            code="source.data['colour'] = source.data['colour_' + this.value];"
            " source.change.emit();",
        ),
    )
    shown_classes = [c for c in class_names if c in set(names)]
    swatches = " ".join(
        f'<span style="color:{colour}">&#9679;</span> {name}'
        for name, colour in zip(
            shown_classes, _class_colours(np.array(shown_classes), shown_classes), strict=True
        )
    )
    splits = " ".join(
        f'<span style="color:{c}">&#9679;</span> {s}' for s, c in SPLIT_COLOURS.items()
    )
    note = Div(
        text=f"<p>classes: {swatches}<br>splits: {splits}<br>novelty: dark (0, a class's mean) "
        f"to yellow (the most novel shown)</p><p>{len(rows)} of {n} particles (a draw seeded "
        "by the study's seed); hover a point for its thumbnail and scores.</p>"
    )
    page = file_html(column(menu, plot, note), resources=INLINE, title=title)
    write_text_atomic(Path(path), page)
    return len(rows)
