/* The command scanner's compiled walk (plugins/gen_vgpu/cmd/scan_accel.py): from a position in
 * a buffer, every command C knows exactly and the Python scanner would accept, until the first
 * one it does not take. Python scans that one as it always has (its error, its batch start,
 * its end), then hands the rest back; C never rejects anything.
 *
 * The tables come from Python's command table (cmd/dispatch.py's DISPATCH) at run time: the
 * header match, reserved bits and length rule of every row, and for each row the validator
 * that mirrors its decoder and check (DM_SCAN_K_*; 0: C stops there). accel/build_cffi.py hands
 * this file to cffi's cdef with the other headers. Found by name, as dm_ppgtt.h's functions: a
 * module without them leaves the scanner on Python.
 */
#ifndef DM_SCAN_H
#define DM_SCAN_H
#include <stdint.h>

/* The row's length rule (cmd/spec.py's LengthRule). */
#define DM_SCAN_ONE 0
#define DM_SCAN_FIELD 1
#define DM_SCAN_ANY 2
#define DM_SCAN_LRI 3
#define DM_SCAN_GFX 4

/* The validator mirroring a row's decoder (cmd/decode.py) and check (cmd/frame.py). */
#define DM_SCAN_K_STOP 0          /* not taken: Python scans it */
#define DM_SCAN_K_PLAIN 1         /* nothing past the header: MI_NOOP, MI_ARB_CHECK, 3D state... */
#define DM_SCAN_K_SDI 2
#define DM_SCAN_K_LRI 3
#define DM_SCAN_K_SRM 4
#define DM_SCAN_K_FLUSH_DW 5
#define DM_SCAN_K_PIPE_CONTROL 6
#define DM_SCAN_K_MATH 7
#define DM_SCAN_K_LRR 8
#define DM_SCAN_K_LRM 9
#define DM_SCAN_K_COPY_MEM_MEM 10
#define DM_SCAN_K_ATOMIC 11
#define DM_SCAN_K_SDI_INDEX 12
#define DM_SCAN_K_COND_BB_END 13
#define DM_SCAN_K_SEMAPHORE_WAIT 14
#define DM_SCAN_K_COLOR_BLT 15
#define DM_SCAN_K_SRC_COPY_BLT 16

/* One candidate of a dispatch slot (cmd/dispatch.py's Entry). */
struct dm_scan_entry {
    uint32_t header;
    uint32_t mask;
    uint32_t reserved;   /* header bits that must be clear */
    uint32_t len_mask;
    uint64_t lengths;    /* DM_SCAN_FIELD: bit n set when n dwords is a valid length */
    int32_t next;        /* the next candidate for the same slot, or -1 */
    uint8_t rule;
    uint8_t kind;        /* DM_SCAN_K_*; DM_SCAN_K_STOP too for a row this engine may not run */
    uint8_t skip;        /* left out of the scan's command list */
    uint8_t pad;
};

/* One engine's table. */
struct dm_scan_table {
    const struct dm_scan_entry *entries;
    const int32_t *slots;      /* 1024, by DW0 >> 22: the first candidate, or -1 */
    const uint8_t *writable;   /* bitmaps by register offset / 4 (mmio/table.py's allow-lists) */
    const uint8_t *readable;
    uint32_t nregs;            /* bits in each bitmap */
    uint32_t mmio_size;        /* a register dword is a dword-aligned offset below this */
};

#define DM_SCAN_SPANS 4

/* Where the commands run (cmd/frame.py's Frame). */
struct dm_scan_frame {
    const struct dm_scan_table *table;
    uint64_t span_start[DM_SCAN_SPANS];  /* the graphics memory, as disjoint [start, end) */
    uint64_t span_end[DM_SCAN_SPANS];
    uint32_t nspans;
    uint32_t level;
    uint32_t privileged;
    uint32_t pphwsp_size;                /* a store-index offset plus its access stays inside */
};

/* Walk buf[pos, end) for at most limit commands, stopping before the first command not taken
 * (unknown kind, not allowed, reserved bits, a bad length, one that does not fit before end,
 * or one the Python scanner would refuse). The dword position of every command taken that is
 * not skipped goes to positions[] (room for limit). Returns the position reached; *walked: the
 * commands taken, *npositions: those listed. */
uint32_t dm_scan_walk(const struct dm_scan_frame *f, const uint32_t *buf, uint32_t pos, uint32_t end,
                      uint32_t limit, uint32_t *positions, uint32_t *walked, uint32_t *npositions);

#endif
