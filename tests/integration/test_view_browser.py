"""`devmodel view` in a real headless browser (Debian's Chromium, from ci/setup-chromium).

A client programs the display through BAR0 as i915 would (the GGTT, a plane, a lit pipe),
with a picture in guest memory; the view serves its page; Chromium loads it. The test reads
back the pixels of the page's <img> (drawn onto a canvas in the page) and compares them with
the device's own decode (`inspect screen`), then flips to a second picture and waits for the
page to show it, and checks the counters the page prints against the device's. Without
Chromium the test fails and says what to run: it never skips.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devmodel.testing import GuestMemory, VfioUserClient
from devmodel.testing.browser import Browser
from devmodel.transport.control import control_path, query
from devmodel.vfio_user.connection import ServerOptions
from gen_vgpu import GenVgpu, Platform
from gen_vgpu.display.png import decode_png_rgb
from gen_vgpu.mmio import display_regs as r
from gen_vgpu.mmio import regs

from .conftest import ServerThread

ROOT = Path(__file__).resolve().parents[2]
W, H = 320, 200
SURF_A, SURF_B = 0x200000, 0x400000  # graphics addresses of the two framebuffers
PAGES = (W * H * 4 + 4095) // 4096
GGTT = regs.GGTT_OFFSET

# The page's <img> drawn onto a canvas and read back as base64 RGBA, with its frame number.
READ_IMG = """(() => {
  const img = document.getElementById("screen");
  if (img.hidden || !img.complete || !img.naturalWidth) return null;
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const px = g.getImageData(0, 0, c.width, c.height).data;
  let s = "";
  for (let i = 0; i < px.length; i += 0x8000) s += String.fromCharCode.apply(null, px.subarray(i, i + 0x8000));
  return {frame: Number(img.dataset.frame), crc: img.dataset.crc32, w: c.width, h: c.height, rgba: btoa(s)};
})()"""


def chromium() -> str:
    """$DEVMODEL_CHROMIUM, or the one ci/setup-chromium provides; a failure saying what to run."""
    if os.environ.get("DEVMODEL_CHROMIUM"):
        return os.environ["DEVMODEL_CHROMIUM"]
    r = subprocess.run(
        [str(ROOT / "ci/setup-chromium"), "--no-fetch"], check=False, capture_output=True, text=True, timeout=120
    )
    if r.returncode != 0:
        pytest.fail(f"no headless browser: {r.stderr.strip()} (ci/test runs ci/setup-chromium)", pytrace=False)
    return r.stdout.strip().splitlines()[-1]


def picture(seed: int) -> bytes:
    """W x H XRGB8888 pixels, each (x, y, seed) distinct enough to catch a misplaced row."""
    return b"".join(
        bytes(((x * 7 + seed) & 0xFF, (y * 3 + x) & 0xFF, (y + seed * 40) & 0xFF, 0))
        for y in range(H)
        for x in range(W)
    )


@pytest.fixture
def lit() -> Iterator[tuple[ServerThread, VfioUserClient]]:
    with tempfile.TemporaryDirectory(prefix="devmodel-") as d:
        st = ServerThread(GenVgpu(Platform.BDW), os.path.join(d, "s.sock"), ServerOptions(), control=True)
        mem = GuestMemory((2 * PAGES + 16) * 4096)
        try:
            with VfioUserClient.connect(st.path) as c:
                c.negotiate()
                c.map_memory(mem)
                for buf, (surf, seed) in enumerate(((SURF_A, 1), (SURF_B, 2))):
                    gpa0 = (1 + buf * PAGES) << 12
                    mem.write(gpa0, picture(seed))
                    for i in range(PAGES):
                        c.write64(0, GGTT + 8 * ((surf >> 12) + i), (gpa0 + (i << 12)) | 1)
                yield st, c
        finally:
            st.stop()
            mem.close()


def light_pipe(c: VfioUserClient) -> None:
    """A 320x200 XRGB8888 linear plane on pipe A, driving port B, as i915 programs it."""
    c.write32(0, r.PIPESRC, (W - 1) << 16 | (H - 1))
    c.write32(0, r.TRANS_DDI_FUNC_CTL, r.TRANS_DDI_FUNC_ENABLE | 1 << r.TRANS_DDI_PORT_SHIFT)
    c.write32(0, r.PLANE_STRIDE, W * 4)
    c.write32(0, r.PLANE_CTL, 1 << 31 | 6 << 26)
    c.write32(0, r.PLANE_SURF, SURF_A)
    c.write32(0, r.TRANSCONF, r.TRANSCONF_ENABLE)


def device_rgb(st: ServerThread) -> tuple[str, bytes]:
    answer = query(control_path(st.path), {"what": "screen", "args": []}, timeout=30)
    w, h, rgb = decode_png_rgb(base64.b64decode(answer["png_base64"]))
    assert (w, h) == (W, H)
    return answer["crc32"], rgb


def page_rgb(browser: Browser, after_frame: int) -> tuple[int, str, bytes]:
    shown = browser.wait_for(f"(() => {{ const v = {READ_IMG}; return v && v.frame > {after_frame} ? v : null; }})()")
    assert (shown["w"], shown["h"]) == (W, H)
    rgba = base64.b64decode(shown["rgba"])
    rgb = bytearray(W * H * 3)
    rgb[0::3], rgb[1::3], rgb[2::3] = rgba[0::4], rgba[1::4], rgba[2::4]
    return shown["frame"], shown["crc"], bytes(rgb)


def test_the_page_shows_the_devices_screen_and_counters(lit: tuple[ServerThread, VfioUserClient]) -> None:
    st, c = lit
    view = subprocess.Popen(
        [sys.executable, "-m", "devmodel", "view", "--socket", st.path, "--listen", "127.0.0.1:0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert view.stdout is not None
        url = view.stdout.readline().split()[2]  # "devmodel view: URL shows PATH"
        assert url.startswith("http://127.0.0.1:")
        with Browser(chromium()) as browser:
            browser.navigate(url)
            # Dark first: no pipe is lit, the page says why once the device's first state arrives
            # (until then it says it waits; on a loaded machine that can be the first thing read).
            assert "no pipe drives the monitor" in browser.wait_for(
                "(() => { const d = document.getElementById('dark'); const t = d.textContent;"
                " return !d.hidden && t !== 'waiting for the device' && t; })()"
            )

            light_pipe(c)
            frame, crc, rgb = page_rgb(browser, 0)
            dev_crc, dev_rgb = device_rgb(st)
            assert crc == dev_crc
            assert rgb == dev_rgb, "the page's image differs from the device's decode"
            expected = picture(1)
            assert dev_rgb[:6] == bytes((expected[2], expected[1], expected[0], expected[6], expected[5], expected[4]))

            # A flip: the surface latches at the next vblank, the page follows.
            c.write32(0, r.PLANE_SURF, SURF_B)
            _, crc_b, rgb_b = page_rgb(browser, frame)
            dev_crc_b, dev_rgb_b = device_rgb(st)
            assert crc_b == dev_crc_b != crc
            assert rgb_b == dev_rgb_b != rgb

            # The counters the page prints are the device's.
            flips = st.call(lambda: st.vgpu.display.counters.flips)  # type: ignore[union-attr]
            shown = browser.wait_for(
                "(() => { const tr = document.querySelector('tr[data-counter=\"display.flips\"]');"
                " return tr && tr.lastChild.textContent; })()"
            )
            assert int(shown) == flips == 2
            requests = browser.wait_for(
                "(() => { const tr = document.querySelector('tr[data-counter=\"messages.requests\"]');"
                " return tr && Number(tr.lastChild.textContent); })()"
            )
            assert requests >= 2 * PAGES  # at least the GGTT writes
            # The image is painted, not only loaded: a screenshot of the page is a PNG.
            shot = browser.screenshot_png()
            assert shot[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("VIEW_SHOT"):
                Path(os.environ["VIEW_SHOT"]).write_bytes(shot)
    finally:
        view.terminate()
        assert view.wait(timeout=30) == 0
