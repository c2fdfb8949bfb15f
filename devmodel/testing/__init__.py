"""Scripting a device without QEMU: a vfio-user client and memfd-backed guest RAM."""

from .client import QEMU_CAPS, VfioUserClient
from .memory import GuestMemory

__all__ = ["GuestMemory", "QEMU_CAPS", "VfioUserClient"]
