"""The interactive latent-space page: self-contained, and a hover in headless Chromium shows a
particle's thumbnail."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryoavae import particles as P
from cryoavae.inference.annotate import class_assignments
from cryoavae.report.latent_explorer import MAX_POINTS, write_latent_explorer

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def make_page(tmp_path: Path, n: int = 120) -> tuple[Path, int]:
    rng = np.random.default_rng(0)
    images = rng.standard_normal((n, 8, 12, 12)).astype(np.float32)
    P.write_stack(tmp_path / "p.mrcs", images, 10.0)
    names = np.array(["a", "b", "c"])[np.arange(n) % 3]
    splits = np.where(names == "c", "unseen", np.where(np.arange(n) % 5 == 0, "val", "train"))
    table = P.particle_table("p.mrcs", np.arange(n) % 3 + 1, names, splits)
    P.write_particle_table(tmp_path / "p.star", table)
    centres = {"a": [1, 0, 0], "b": [0, 1, 0], "c": [0.7, 0.7, 0]}
    mu = np.array([centres[c] for c in names]) + 0.1 * rng.standard_normal((n, 3))
    latents = pd.DataFrame(
        {"image": table[P.IMAGE], "class_name": names, "split": splits}
        | {f"mu_{i}": mu[:, i] for i in range(3)}
    )
    umap = pd.DataFrame({"umap_x": mu[:, 0] * 10, "umap_y": mu[:, 1] * 10})
    page = tmp_path / "latent_space.html"
    shown = write_latent_explorer(
        page,
        latents,
        umap,
        class_assignments(latents, latents, ["a", "b", "c"]),
        P.ParticleImages(table, tmp_path / "p.star"),
        ["a", "b", "c"],
        seed=0,
        title="test",
    )
    return page, shown


def test_the_page_is_one_self_contained_file(tmp_path):
    page, shown = make_page(tmp_path)
    html = page.read_text()
    assert shown == 120 and html.count("data:image/png;base64,") >= 120
    assert "<script src=" not in html  # BokehJS is inlined: the page opens offline
    assert "Colour by" in html


def test_large_studies_show_a_seeded_subsample(tmp_path):
    _, shown = make_page(tmp_path, n=MAX_POINTS + 300)
    assert shown == MAX_POINTS


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed")
def test_hovering_a_point_in_headless_chromium_shows_its_thumbnail(tmp_path):
    from playwright.sync_api import sync_playwright

    page_path, _ = make_page(tmp_path)
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})

        def offline(route):
            if route.request.url.startswith(("file:", "data:")):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", offline)
        page.goto(page_path.as_uri())
        canvas = page.locator("canvas").first
        canvas.wait_for(timeout=15_000)
        box = canvas.bounding_box()
        thumbnail, text = None, ""
        for fy in np.linspace(0.1, 0.9, 17):  # sweep the plot until the cursor is on a point
            for fx in np.linspace(0.1, 0.9, 17):
                page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
                page.wait_for_timeout(20)
                tooltip = page.locator(".bk-Tooltip img")
                if tooltip.count() and tooltip.first.is_visible():
                    thumbnail = tooltip.first.evaluate("i => [i.naturalWidth, i.src.slice(0, 22)]")
                    text = tooltip.first.evaluate("i => i.parentElement.innerText")
                    break
            if thumbnail:
                break
        browser.close()
    assert thumbnail == [64, "data:image/png;base64,"]
    assert "novelty" in text and "nearest seen" in text
    assert outside == []
