"""A guest script that never finishes: the harness must kill QEMU at its deadline and report
the console tail (used by tests/guest/test_harness_faults.py, not run on its own).
"""
# devmodel-guest: manual
import sys
import time


def main():
    print("1..1")
    print("ok 1 - about to hang", flush=True)
    print("# devmodel-fault: hanging now", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
