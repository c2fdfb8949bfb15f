"""Where commands run (``Frame``), and the scanner's per-command checks that need it.

A frame says which engine, the nesting level (0 ring, 1 first-level batch, 2 second-level
batch), whether the buffer is privileged (the ring and GGTT batches are; PPGTT batches are
not) and this vGPU's graphics memory. Each check takes a decoded record and the frame and
raises FieldError with what is wrong; the batch-start check returns the frame of the batch.
The rows of opcodes.py name which check each command gets.
"""

from __future__ import annotations

from typing import NamedTuple

from ..graphics_memory import GraphicsMemory
from ..mmio.table import may_read, may_write
from .engines import Engine
from .records import (
    Atomic,
    BatchStart,
    CondBatchEnd,
    CopyMemMem,
    FlushDw,
    LoadRegisterImm,
    LoadRegisterMem,
    LoadRegisterReg,
    PipeControl,
    PostSync,
    SemaphoreWait,
    StoreDataImm,
    StoreRegisterMem,
)
from .reject import FieldError

__all__ = [
    "MAX_LEVEL",
    "Frame",
    "check_atomic",
    "check_cond_batch_end",
    "check_copy_mem_mem",
    "check_lrm",
    "check_lrr",
    "check_semaphore_wait",
    "check_batch_end",
    "check_batch_start",
    "check_flush_dw",
    "check_lri",
    "check_pipe_control",
    "check_sdi",
    "check_srm",
    "ggtt_access",
]

MAX_LEVEL = 2  # ring -> first-level batch -> second-level batch


class Frame(NamedTuple):
    engine: Engine
    level: int
    privileged: bool
    memory: GraphicsMemory

    @classmethod
    def ring(cls, engine: Engine, memory: GraphicsMemory) -> Frame:
        return cls(engine, 0, True, memory)

    def enter(self, bb: BatchStart) -> Frame:
        """The frame the batch ``bb`` starts runs in, or FieldError if it may not start."""
        if bb.second_level:
            if self.level == 0:
                raise FieldError("a second-level batch cannot start from the ring")
            if self.level >= MAX_LEVEL:
                raise FieldError(f"batches nested deeper than {MAX_LEVEL} levels")
            level = self.level + 1
        else:
            level = max(self.level, 1)  # from the ring: level 1; from a batch: a chain, same level
        if not bb.ppgtt:
            if not self.privileged:
                raise FieldError("a GGTT batch cannot start from a non-privileged (PPGTT) batch")
            if not self.memory.contains(bb.address, 4):
                raise FieldError(f"GGTT batch at {bb.address:#x} outside this vGPU's graphics memory {self.memory}")
        return Frame(self.engine, level, not bb.ppgtt, self.memory)


def ggtt_access(frame: Frame, address: int, size: int) -> None:
    """A GGTT read or write of ``size`` bytes: privileged buffers only, inside the graphics
    memory."""
    if not frame.privileged:
        raise FieldError("GGTT access from a non-privileged (PPGTT) batch")
    if not frame.memory.contains(address, size):
        raise FieldError(
            f"GGTT range [{address:#x}, {address + size:#x}) outside this vGPU's graphics memory {frame.memory}"
        )


def store_index(frame: Frame) -> None:
    if not frame.privileged:
        raise FieldError("store-index form from a non-privileged (PPGTT) batch")


def _post_sync(frame: Frame, index: bool, ggtt: bool, address: int, size: int) -> None:
    if index:
        store_index(frame)
    elif ggtt:
        ggtt_access(frame, address, size)


def check_sdi(rec: StoreDataImm, frame: Frame) -> Frame | None:
    if rec.ggtt:
        ggtt_access(frame, rec.address, rec.size)
    return None


def readable(frame: Frame, register: int) -> None:
    if not may_read(frame.engine, register):
        raise FieldError(f"register {register:#x} is not on {frame.engine.name}'s read allow-list")


def writable(frame: Frame, register: int) -> None:
    if not may_write(frame.engine, register):
        raise FieldError(f"register {register:#x} is not on {frame.engine.name}'s write allow-list")


def check_lri(rec: LoadRegisterImm, frame: Frame) -> Frame | None:
    for register, _ in rec.writes:
        writable(frame, register)
    return None


def check_srm(rec: StoreRegisterMem, frame: Frame) -> Frame | None:
    readable(frame, rec.register)
    if rec.ggtt:
        ggtt_access(frame, rec.address, 4)
    return None


def check_flush_dw(rec: FlushDw, frame: Frame) -> Frame | None:
    if rec.post_sync is not PostSync.NONE:
        _post_sync(frame, rec.store_index, rec.ggtt, rec.address, rec.size)
    return None


def check_pipe_control(rec: PipeControl, frame: Frame) -> Frame | None:
    if rec.post_sync is not PostSync.NONE:
        _post_sync(frame, rec.store_index, rec.ggtt, rec.address, 8)
    return None


def check_batch_start(rec: BatchStart, frame: Frame) -> Frame | None:
    return frame.enter(rec)


def check_batch_end(rec: object, frame: Frame) -> Frame | None:
    if frame.level == 0:
        raise FieldError("MI_BATCH_BUFFER_END outside a batch")
    return None


def check_cond_batch_end(rec: CondBatchEnd, frame: Frame) -> Frame | None:
    check_batch_end(rec, frame)
    if rec.ggtt:
        ggtt_access(frame, rec.address, 4)
    return None


def check_semaphore_wait(rec: SemaphoreWait, frame: Frame) -> Frame | None:
    if rec.ggtt:
        ggtt_access(frame, rec.address, 4)
    return None


def check_lrr(rec: LoadRegisterReg, frame: Frame) -> Frame | None:
    readable(frame, rec.src)
    writable(frame, rec.dst)
    return None


def check_lrm(rec: LoadRegisterMem, frame: Frame) -> Frame | None:
    writable(frame, rec.register)
    if rec.ggtt:
        ggtt_access(frame, rec.address, 4)
    return None


def check_copy_mem_mem(rec: CopyMemMem, frame: Frame) -> Frame | None:
    if rec.src_ggtt:
        ggtt_access(frame, rec.src, 4)
    if rec.dst_ggtt:
        ggtt_access(frame, rec.dst, 4)
    return None


def check_atomic(rec: Atomic, frame: Frame) -> Frame | None:
    if rec.ggtt:
        ggtt_access(frame, rec.address, rec.size)
    return None
