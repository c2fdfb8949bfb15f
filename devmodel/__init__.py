"""devmodel: device models served to QEMU over vfio-user."""

__version__ = "0.1.0"
__all__ = ["__version__"]
