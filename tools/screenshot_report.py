"""Open a `snakemake --report` HTML in headless Chromium, show a figure, save a screenshot.

Usage: ``python tools/screenshot_report.py REPORT.html OUT.png [--category C]
[--subcategory S] [--figure F]`` (the subcategory is the variant, for a study with several).

It proves the report renders and its figures display in a real browser (Debian's ``chromium``;
driven by Playwright, which is pointed at that binary and never downloads a browser). The exit
status is non-zero when the category, a result link or the figure image cannot be found.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def screenshot_report(
    report: Path,
    out: Path,
    category: str,
    figure: str,
    chromium: str = "/usr/bin/chromium",
    subcategory: str | None = None,
) -> dict:
    """Open ``category`` (and its ``subcategory``), press the view button of ``figure``; return
    the images on the page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.goto(report.resolve().as_uri())
        page.get_by_text(category, exact=True).first.click()
        if subcategory is not None:
            page.get_by_text(subcategory, exact=True).first.click()
        row = page.locator("tr", has_text=figure).first
        row.wait_for(timeout=10_000)
        row.locator('a[href="#"]').first.click()
        page.wait_for_timeout(1000)
        images = page.locator("img")
        sizes = [
            images.nth(i).evaluate("img => [img.naturalWidth, img.naturalHeight]")
            for i in range(images.count())
        ]
        page.screenshot(path=str(out))
        browser.close()
    return {"image_sizes": sizes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--category", default="2. Latent space")
    parser.add_argument("--subcategory", help="the variant, where the study has several")
    parser.add_argument("--figure", default="umap.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        shown = screenshot_report(
            args.report, args.out, args.category, args.figure, args.chromium, args.subcategory
        )
    except PlaywrightTimeout:
        where = args.category + (f" / {args.subcategory}" if args.subcategory else "")
        hint = "" if args.subcategory else " (a study with several variants needs --subcategory)"
        print(f"{args.report}: no row for {args.figure} under '{where}'{hint}", file=sys.stderr)
        return 1
    print(shown)
    visible = [s for s in shown["image_sizes"] if s[0] > 100 and s[1] > 100]
    if not visible:
        print("no figure was displayed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
