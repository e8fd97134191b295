"""A small PNG of the top of a report (the claims and the start of the verdicts), taken with
headless Chromium, the browser the report's tests use:

    python -m benchmark.analysis.screenshot reports/<sweep>/index.html docs/report-claims.png
    make screenshot SWEEP=<sweep>
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_browser() -> Optional[str]:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def screenshot(page: Path, out: Path, *, width: int = 1300, height: int = 1500, scale: float = 0.7) -> Path:
    """Render `page` at width x height CSS pixels, shrink by `scale`, write `out` (PNG)."""
    from PIL import Image

    browser = find_browser()
    if browser is None:
        raise RuntimeError(
            "no headless browser found (looked for " + ", ".join(BROWSERS) + "); Debian: apt-get install -y chromium"
        )
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.png"
        subprocess.run(
            [
                browser,
                *FLAGS,
                f"--user-data-dir={tmp}/profile",
                f"--screenshot={raw}",
                f"--window-size={width},{height}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        img = Image.open(raw).convert("RGB")
        img = img.resize((int(img.width * scale), int(img.height * scale)), Image.LANCZOS)
        out.parent.mkdir(parents=True, exist_ok=True)
        img.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)  # a small file for docs/
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmark.analysis.screenshot", description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path, help="reports/<sweep>/index.html")
    ap.add_argument("out", type=Path, help="PNG to write, e.g. docs/report-claims.png")
    ap.add_argument("--width", type=int, default=1300)
    ap.add_argument("--height", type=int, default=1500)
    args = ap.parse_args(argv)
    if not args.page.exists():
        print(f"error: no report at {args.page}; build it first (make report SWEEP=<sweep>)", file=sys.stderr)
        return 2
    try:
        print(f"screenshot: {screenshot(args.page, args.out, width=args.width, height=args.height)}")
    except (RuntimeError, subprocess.SubprocessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
