"""Settings for every test: DMA windows get guard pages (devmodel/device/hostmem.py), here and
in every server process a test starts (they inherit the environment), so an access that strays
past a window kills the test instead of passing silently."""

from __future__ import annotations

import os

from devmodel.device.hostmem import GUARD_ENV

os.environ[GUARD_ENV] = "1"
