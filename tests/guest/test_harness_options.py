"""A guest script's options as the harness reads them (host only, no QEMU): the guest RAM a
boot gets is the most any of its scripts asks for (memory=MIB), 512 MiB otherwise, and QEMU's
memory backend is that size."""
import harness
from harness import guest


def test_memory_option(tmp_path, monkeypatch):
    monkeypatch.setattr(guest, "GUEST_DIR", tmp_path)
    (tmp_path / "test_big.py").write_text("# devmodel-guest: image=i915 memory=4096 timeout=60\n")
    (tmp_path / "test_plain.py").write_text("# devmodel-guest: image=i915\n")
    assert harness.script_options("big") == {"image": "i915", "memory": 4096, "timeout": 60.0}
    assert harness.script_memory(["plain"]) == 512
    assert harness.script_memory(["plain", "big"]) == 4096
    argv = harness.Qemu(tmp_path, memory_mb=harness.script_memory(["big"]), qemu="qemu").argv()
    assert argv[argv.index("-m") + 1] == "4096M"
    assert "memory-backend-memfd,id=mem,size=4096M,share=on" in argv
