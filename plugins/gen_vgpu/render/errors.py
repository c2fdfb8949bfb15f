"""The one refusal of the render pipelines."""

from __future__ import annotations

from devmodel.errors import DeviceError

__all__ = ["RenderRefused"]


class RenderRefused(DeviceError):
    """A draw or dispatch the device will not run (state or a kernel it does not model, an
    address it cannot reach): the context hangs with this reason, nothing is drawn."""
