"""The command streamers' timestamp clock: every engine's RING_TIMESTAMP and its upper dword
count one clock at the platform's frequency (the one i915 6.1 computes: 12.5 MHz on GEN8,
CTC_MODE's on GEN9), and CTX_TIMESTAMP counts while a context is active, loaded from and saved
to its image."""

from __future__ import annotations

import pytest

from gen_vgpu.engines import ENGINES, EngineId, engine_by_id
from gen_vgpu.mmio import engine_regs as er
from gen_vgpu.mmio.table import may_read, table_for
from gen_vgpu.platform import Platform
from gen_vgpu.timestamp import CTC_MODE

from .gt_rig import PAGE, Rig, desc

RCS = engine_by_id(EngineId.RCS)
BCS = engine_by_id(EngineId.BCS)
A, B = 0x10000, 0x20000
CTX_TIMESTAMP_DWORD = 0x23  # i915's CTX_TIMESTAMP: the value dword of the image's pair


def i915_gen9_frequency(ctc_mode: int) -> int:
    """gen9_read_clock_frequency with the crystal as source (bit 0 clear): 24 MHz shifted
    right by 3 minus bits 2:1."""
    assert not ctc_mode & 1
    return 24_000_000 >> (3 - ((ctc_mode >> 1) & 3))


@pytest.mark.parametrize("platform,hz", [(Platform.BDW, 12_500_000), (Platform.SKL, 12_000_000)])
def test_every_engine_counts_at_the_frequency_i915_computes(platform: Platform, hz: int) -> None:
    rig = Rig(platform)
    if platform is Platform.SKL:
        assert i915_gen9_frequency(rig.r(CTC_MODE)) == hz
    else:
        assert CTC_MODE not in table_for(platform, False).registers  # GEN8: a fixed 80 ns
    rig.now = 1.0
    assert {rig.r(e.reg(er.RING_TIMESTAMP)) for e in ENGINES} == {hz}
    rig.now = 2.5
    assert {rig.r(e.reg(er.RING_TIMESTAMP)) for e in ENGINES} == {int(2.5 * hz)}
    # Past 32 bits: the upper dword carries.
    rig.now = 1000.0
    ticks = 1000 * hz
    for e in ENGINES:
        assert rig.r(e.reg(er.RING_TIMESTAMP)) == ticks & 0xFFFFFFFF
        assert rig.r(e.reg(er.RING_TIMESTAMP_UDW)) == ticks >> 32 > 0


def test_ring_timestamp_is_read_only_and_a_command_stream_may_store_it() -> None:
    rig = Rig()
    rig.now = 0.5
    rig.w(BCS.reg(er.RING_TIMESTAMP), 0)
    rig.w(BCS.reg(er.RING_TIMESTAMP_UDW), 0x1234)
    assert rig.r(BCS.reg(er.RING_TIMESTAMP)) == 6_250_000
    assert rig.r(BCS.reg(er.RING_TIMESTAMP_UDW)) == 0
    for e in ENGINES:
        for off in (er.RING_TIMESTAMP, er.RING_TIMESTAMP_UDW, er.RING_CTX_TIMESTAMP):
            assert may_read(e.id, e.reg(off))


def image_ctx_timestamp(rig: Rig, lrca: int) -> int:
    return rig.gm.dword(lrca + PAGE + CTX_TIMESTAMP_DWORD * 4)


@pytest.fixture
def rig() -> Rig:
    rig = Rig()
    rig.enable_execlists(RCS, 0x1000)
    for lrca in (A, B):
        rig.make_context(lrca)
    return rig


def test_ctx_timestamp_counts_while_the_context_runs_and_is_saved_to_its_image(rig: Rig) -> None:
    reg = RCS.reg(er.RING_CTX_TIMESTAMP)
    rig.gm.set_dword(A + PAGE + CTX_TIMESTAMP_DWORD * 4, 1000)  # what it ran before
    rig.now = 10.0
    rig.elsp(RCS, desc(A, 0xA))
    assert rig.r(reg) == 1000
    rig.now += 0.001
    assert rig.r(reg) == 1000 + 12_500
    rig.engines.complete(rig.executor.started[0])
    assert image_ctx_timestamp(rig, A) == 1000 + 12_500  # saved with the context
    rig.now += 1.0
    assert rig.r(reg) == 1000 + 12_500  # idle: no context counts


def test_a_switch_saves_one_context_and_loads_the_next(rig: Rig) -> None:
    reg = RCS.reg(er.RING_CTX_TIMESTAMP)
    rig.gm.set_dword(B + PAGE + CTX_TIMESTAMP_DWORD * 4, 50)
    rig.elsp(RCS, desc(A, 0xA), desc(B, 0xB))
    rig.now += 0.002
    rig.engines.complete(rig.executor.started[0])  # element switch
    assert image_ctx_timestamp(rig, A) == 25_000
    assert rig.r(reg) == 50
    rig.w(reg, 7)  # a load of the running context's count (MI_LOAD_REGISTER_*), as i915 gen12 does
    rig.now += 0.001
    rig.engines.complete(rig.executor.started[1])
    assert image_ctx_timestamp(rig, B) == 7 + 12_500


def test_a_preemption_saves_the_preempted_context(rig: Rig) -> None:
    rig.elsp(RCS, desc(A, 0xA))
    rig.now += 0.004
    rig.elsp(RCS, desc(B, 0xB))  # a preemption request, served at the end of A's segment
    rig.now += 0.004
    rig.engines.complete(rig.executor.started[0])
    assert image_ctx_timestamp(rig, A) == 100_000  # active until the arbitration point
    assert rig.r(RCS.reg(er.RING_CTX_TIMESTAMP)) == 0  # B's image: it never ran


def test_a_reset_saves_nothing(rig: Rig) -> None:
    rig.elsp(RCS, desc(A, 0xA))
    rig.now += 1.0
    rig.engines.reset_engines(lambda e: True)
    assert image_ctx_timestamp(rig, A) == 0
