"""Host side of the guest lane: start the device model, boot QEMU (TCG) with the guest image,
collect the TAP results that the guest scripts print on the serial console.

Import with guest-tests/ on sys.path: `from harness import run_guest, HarnessError`.
Every wait has a deadline; a failure raises HarnessError with the logs that explain it.
"""
from .channel import GuestChannel
from .device import DeviceModel
from .errors import HarnessError
from .guest import GuestResult, dmesg_of, guest_scripts, run_guest, script_image, script_memory, script_options
from .paths import GUEST_IMAGES, find_guest_image, find_qemu, output_dir, repo_root, timeout_scale
from .picture import Picture, picture_from_console, png_bytes, write_png
from .qemu import Qemu, Qtest, vfio_user_device
from .tap import Section, parse_console

__all__ = [
    "HarnessError", "GUEST_IMAGES", "find_guest_image", "find_qemu", "repo_root", "output_dir", "timeout_scale",
    "DeviceModel", "GuestChannel", "Qemu", "Qtest", "vfio_user_device", "Section", "parse_console",
    "GuestResult", "dmesg_of", "guest_scripts", "run_guest", "script_image", "script_memory", "script_options",
    "Picture", "picture_from_console", "png_bytes", "write_png",
]
