"""The report in a real browser: headless Chromium (Debian's `chromium`) renders it from file://
without console errors, the verdict table is in the rendered DOM, and the screenshot shows it
(the verdict badges' colours are on screen)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import benchmark as bm  # noqa: F401
from benchmark.analysis import report

from synthetic_runs import make_sweep, parse_report

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("report_browser"),  # `make test`: one worker builds the module's report
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="headless Chromium not installed at /usr/bin/chromium "
        "(Debian: apt-get install -y chromium; .ci/run installs it)",
    ),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]
# Chromium logs every console message (console.*, uncaught exceptions, failed loads) as INFO:CONSOLE.
CONSOLE = re.compile(r"(INFO|WARNING|ERROR):CONSOLE|Uncaught|Failed to load resource|ERR_FILE_NOT_FOUND")
HELPS_BG, HURTS_BG = (0xD6, 0xE9, 0xF8), (0xFB, 0xE0, 0xC8)  # .v-helps / .v-hurts in report.html.j2


def chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    sweep = make_sweep(root, "browser", cells=("rnn", "lstm", "gru"), tasks=("adding",), lens=(5, 10))
    return report.build(sweep, tmp_path_factory.mktemp("reports") / "browser")


def test_console_check_catches_errors(tmp_path):
    """The negative control: a page with a console error and an uncaught exception is flagged."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><script>console.error("bad thing"); throw new Error("boom")</script></body></html>')
    r = chromium(bad, tmp_path, "--dump-dom")
    errors = console_errors(r.stderr)
    assert any("bad thing" in e for e in errors) and any("Uncaught Error: boom" in e for e in errors), r.stderr[-2000:]


def test_report_renders_without_console_errors_and_shows_the_verdicts(page, tmp_path):
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_errors(dom.stderr) == []
    p = parse_report(dom.stdout)  # the DOM after rendering, not the file
    assert "verdicts" in p.table_ids and len(p.verdict_rows) == 2 * 3
    assert all(src.startswith("data:image/png;base64,") for src in p.imgs) and len(p.imgs) >= 5

    shot = tmp_path / "report.png"
    r = chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1400,2000")
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    assert console_errors(r.stderr) == []
    img = np.asarray(Image.open(shot).convert("RGB"))  # (2000, 1400, 3)
    assert img.shape[:2] == (2000, 1400)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # not blank: text, tables, figures
    colours = {tuple(c) for c in np.unique(img.reshape(-1, 3), axis=0)}
    assert HELPS_BG in colours and HURTS_BG in colours  # the verdict badges are on screen, above the fold
    keep = Path(shutil.copy(shot, page.parent / "screenshot.png"))
    assert keep.stat().st_size > 10_000
