"""The three reports render in headless Chromium (Debian ``chromium``): the page loads with no
console error, every plot image decodes (naturalWidth > 0), nothing is fetched from outside
the file, and a screenshot at A4 proportions is taken.

Skips when Chromium is absent, except under CI. Set SRDOSE_SCREENSHOT_DIR to keep the
screenshots (the reports themselves are written under pytest's tmp folder).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_DATA

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--hide-scrollbars",
]
CHECK = """<script>window.addEventListener("load", () => {
  const imgs = [...document.images];
  document.body.setAttribute("data-imgcheck", imgs.length + ":" + imgs.map(i => i.naturalWidth).join(","));
});</script>"""


def chromium() -> str:
    for path in ("/usr/bin/chromium", shutil.which("chromium") or ""):
        if path and os.path.exists(path):
            return path
    if os.environ.get("CI"):
        pytest.fail("CI needs Debian chromium to render the reports (apt-get install chromium)")
    pytest.skip("chromium is not installed")


def run_chromium(*args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="srdose-chromium-")
    try:
        return subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def srdose(*args, env):
    r = subprocess.run(
        [sys.executable, "-m", "srdose", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )
    return r


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    chromium()
    base = tmp_path_factory.mktemp("render")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SRDOSE_")},
        "SRDOSE_DATA_DIR": str(base / "data"),
    }
    assert srdose("ingest", SAMPLE_DATA, env=env).returncode in (0, 1)
    assert (
        srdose("physics", "import", SAMPLE_DATA / "physics" / "example_synthetic_hologic_unit0.csv", env=env).returncode
        == 0
    )
    assert srdose("recalc", env=env).returncode == 0
    out = base / "reports"
    period = ["--from", "2023-01-01", "--to", "2025-12-31", "--out", out]
    for args in (["survey", "--unit", "SDM6737448"], ["drl", "--min-events", "1"], ["qa", "--unit", "SDM6737448"]):
        r = srdose("report", *args, *period, env=env)
        assert r.returncode == 0, r.stderr
    html = {p.name.split("_")[0]: p for p in out.rglob("*.html")}
    assert sorted(html) == ["drl", "qa", "survey"]
    return html


@pytest.mark.parametrize("kind, n_images", [("survey", 2), ("drl", 2), ("qa", 6)])
def test_report_renders_in_chromium(reports, kind, n_images, tmp_path):
    page = reports[kind]
    text = page.read_text("utf-8")
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", text)
    assert "@page" in text and "A4" in text
    assert len(re.findall(r'<img src="data:image/png;base64,', text)) == n_images
    checked = tmp_path / page.name
    checked.write_text(text.replace("</body>", CHECK + "</body>"), "utf-8")
    r = run_chromium("--dump-dom", checked.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r'data-imgcheck="(\d+):([\d,]*)"', r.stdout)
    assert m, "the page did not finish loading"
    widths = [int(w) for w in m.group(2).split(",") if w]
    assert int(m.group(1)) == n_images and len(widths) == n_images and min(widths) > 0
    errors = [
        line for line in r.stderr.splitlines() if ("CONSOLE" in line) or (":ERROR:" in line and "file://" in line)
    ]
    assert not errors, errors[:5]
    shot = Path(os.environ.get("SRDOSE_SCREENSHOT_DIR") or tmp_path) / f"{kind}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    r = run_chromium(f"--screenshot={shot}", "--window-size=1240,1754", page.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    errors = [line for line in r.stderr.splitlines() if "CONSOLE" in line]
    assert not errors, errors[:5]
