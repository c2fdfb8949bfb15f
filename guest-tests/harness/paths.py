"""Where QEMU, the guest image and the per-test output live."""
import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from .errors import HarnessError


def repo_root():
    return Path(__file__).resolve().parents[2]


def timeout_scale():
    """DEVMODEL_TIMEOUT_SCALE multiplies every deadline (slow or loaded machines)."""
    return float(os.environ.get("DEVMODEL_TIMEOUT_SCALE", "1"))


def _setup_no_fetch(script, *args):
    """Run ci/<script> --no-fetch ARGS: the cached paths, or a HarnessError saying what to run."""
    path = repo_root() / "ci" / script
    try:
        r = subprocess.run([str(path), "--no-fetch", *args], capture_output=True, text=True, timeout=120,
                           check=False)
    except subprocess.TimeoutExpired:
        raise HarnessError("ci/%s --no-fetch did not finish in 120 s" % script) from None
    if r.returncode:
        raise HarnessError("%s\nThe guest lane needs it: run ci/%s first." % (r.stderr.strip(), script))
    return r.stdout


@functools.cache
def find_qemu():
    """$DEVMODEL_QEMU, or the QEMU that ci/setup-qemu put in the cache."""
    env = os.environ.get("DEVMODEL_QEMU")
    if env:
        if not os.access(env, os.X_OK):
            raise HarnessError("DEVMODEL_QEMU=%s is not an executable" % env)
        return env
    return _setup_no_fetch("setup-qemu").strip().splitlines()[-1]


# The images ci/setup-guest builds, and the environment variables that replace each one.
GUEST_IMAGES = {
    "base": ("DEVMODEL_GUEST_KERNEL", "DEVMODEL_GUEST_INITRD"),
    "i915": ("DEVMODEL_GUEST_I915_KERNEL", "DEVMODEL_GUEST_I915_INITRD"),
}


@functools.cache
def find_guest_image(image="base"):
    """(kernel, initrd) of a guest image: "base" (the cloud kernel with uio/vfio) or "i915" (the
    generic kernel with the i915 module closure). The image's two environment variables (see
    GUEST_IMAGES), or what `ci/setup-guest --image NAME` built (rebuilt from cached packages
    if a guest script changed)."""
    if image not in GUEST_IMAGES:
        raise HarnessError(f"no guest image {image!r} (there are {', '.join(GUEST_IMAGES)})")
    names = GUEST_IMAGES[image]
    kernel, initrd = (os.environ.get(n) for n in names)
    if kernel or initrd:
        for name, p in zip(names, (kernel, initrd), strict=True):
            if not p or not os.path.isfile(p):
                raise HarnessError("%s=%s is not a file (set both, or neither)" % (name, p))
        return kernel, initrd
    out = _setup_no_fetch("setup-guest", "--image", image)
    found = dict(re.findall(r"^(kernel|initrd) (.+)$", out, re.M))
    if set(found) != {"kernel", "initrd"}:
        raise HarnessError(f"ci/setup-guest --no-fetch --image {image} printed no kernel/initrd paths")
    return found["kernel"], found["initrd"]


def output_dir(name):
    """A fresh directory test-output/<name>/ in the repository (gitignored) for one test's logs."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120] or "run"
    d = repo_root() / "test-output" / safe
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d
