"""Host side of the guest lane: start the device model, boot QEMU (TCG) with the guest image,
collect the TAP results that the guest scripts print on the serial console.

Import with guest-tests/ on sys.path: `from harness import run_guest, HarnessError`.
Every wait has a deadline; a failure raises HarnessError with the logs that explain it.
"""
from .errors import HarnessError
from .paths import GUEST_IMAGES, find_guest_image, find_qemu, repo_root, output_dir, timeout_scale
from .device import DeviceModel
from .qemu import Qemu, Qtest, vfio_user_device
from .tap import Section, parse_console
from .guest import GuestResult, dmesg_of, guest_scripts, run_guest, script_image, script_options

__all__ = [
    "HarnessError", "GUEST_IMAGES", "find_guest_image", "find_qemu", "repo_root", "output_dir", "timeout_scale",
    "DeviceModel", "Qemu", "Qtest", "vfio_user_device", "Section", "parse_console",
    "GuestResult", "dmesg_of", "guest_scripts", "run_guest", "script_image", "script_options",
]
