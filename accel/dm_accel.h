/* The compiled accelerator's interface: the declarations C and cffi share.
 *
 * accel/build_cffi.py hands this file to cffi's cdef (without its preprocessor lines other
 * than the #define constants), so it is the one declaration of these structs for both sides.
 * Every protocol constant (command numbers, flag bits, limits) and every device constant
 * (register and GGTT layout, owner codes, entry bits) comes from Python at run time, from the
 * one declaration each has there; the C holds none of its own.
 */
#ifndef DM_ACCEL_H
#define DM_ACCEL_H
#include <stdint.h>

/* Raised whenever a struct below or a status changes meaning: devmodel/accel.py refuses a
 * module built from other sources and falls back to Python. */
#define DM_ABI_VERSION 8

/* What dm_drain returns. Every status leaves dm_conn.pos at the first message not handled;
 * the NEED and OUT statuses change nothing of that message (a WRITE_MULTI resumes at entry
 * multi_done), so calling again after resolving them carries on where it stopped. */
#define DM_DONE 0        /* every complete message in [pos, end) handled */
#define DM_PYTHON 1      /* the message at pos is Python's: a command, a check or a register C does not take */
#define DM_NEED_SYNC 2   /* a GGTT write needs the GGTT's counts loaded (dm_ggtt.synced == 0) */
#define DM_NEED_CODE 3   /* a GGTT write needs the owner code of windows[need_window] */
#define DM_NEED_ROOM 4   /* the owner-count deltas or the unlisted log are full: fold them and call again */
#define DM_OUT_FULL 5    /* the reply buffer is full and the socket takes no more: send it and call again */

/* dm_conn.hand: what DM_PYTHON's message is when Python may take it without decoding it. */
#define DM_HAND_READ 1
#define DM_HAND_WRITE 2

/* What dm_serve returns. */
#define DM_SERVE_EVENTS 16   /* fds other than a plain read of the client are ready: events[] */
#define DM_SERVE_TIMEOUT 17  /* nothing within timeout_ns */
#define DM_SERVE_READ 18     /* a read for Python to finish: fds came with it, EOF, or messages C left */

/* Wire layouts (vfio-user, little-endian, naturally aligned: no padding); a test checks them
 * against devmodel.vfio_user.layouts. */
struct dm_header {
    uint16_t msg_id;
    uint16_t command;
    uint32_t size;
    uint32_t flags;
    uint32_t error;
};

struct dm_region_access {
    uint64_t offset;
    uint32_t region;
    uint32_t count;
};

struct dm_write_multi_entry {
    uint64_t offset;
    uint32_t region;
    uint32_t count;
    uint8_t data[8];
};

/* One DMA window as the GGTT sees it; the table is ordered by iova (DmaMap's order). */
struct dm_window {
    uint64_t iova;
    uint64_t end;
    uint64_t hfn_base;
    uint32_t code;       /* its owner code; 0: none allocated yet (DM_NEED_CODE) */
    uint32_t reserved;
};

struct dm_delta {
    uint32_t code;
    uint32_t reserved;
    int64_t delta;
};

/* The GEN GGTT (plugins/gen_vgpu/gtt/ggtt.py): its three arrays and, while synced, the
 * bookkeeping C changes and Python folds back (counts by owner code, counters, the
 * unbacked bounds). */
struct dm_ggtt {
    uint64_t *guest;
    uint64_t *shadow;
    uint32_t *owner;
    uint64_t entries;
    uint64_t scratch_entry;
    uint64_t absent_entry;
    uint64_t present_bit;
    uint64_t addr_mask;
    uint32_t code_none;
    uint32_t code_pending_low;
    uint32_t code_pending_high;
    uint32_t code_unbacked;
    const struct dm_window *windows;
    uint32_t nwindows;
    uint32_t need_window;
    uint32_t synced;
    uint32_t ndeltas;
    int64_t unbacked;    /* entries whose owner is code_unbacked */
    uint64_t unbacked_lo;
    uint64_t unbacked_hi;
    uint64_t writes;
    uint64_t partial_writes;
    uint64_t scratch_mappings;
    struct dm_delta deltas[32];
};

/* How a declared register C serves takes a write (RegisterFile.write32): the bits it
 * changes, whether the upper half of a write selects them (masked), its write-1-to-clear
 * bits, and what its write hook does after the store when the hook is one C runs too
 * (Register.effect: dm_irq's effect_reevaluate or effect_master; 0: nothing). */
struct dm_reg_class {
    uint32_t rw_mask;
    uint32_t w1c;
    uint32_t masked;
    uint32_t effect;
};

/* The interrupts (plugins/gen_vgpu/interrupts.py) as a write effect needs them: the words
 * Interrupts.shared keeps current ([0] the line is asserted, [1] the banks of the status
 * map, then per bank its IIR dword, IER dword, bits and master status bit), the master
 * register's dword and enable bit, and the effect numbers of Interrupts._reevaluate and
 * Interrupts._write_master. */
struct dm_irq {
    const uint32_t *shared;
    uint32_t max_banks;
    uint32_t master;
    uint32_t enable;
    uint32_t effect_reevaluate;
    uint32_t effect_master;
    uint32_t reserved;
};

/* The GEN vGPU's BAR0 (plugins/gen_vgpu/bar0.py): registers below mmio_size, of which C
 * takes only those the register file marks (one byte per dword, RegisterFile.plain: 1
 * storage and nothing else; told_later, storage whose unlisted hook may hear of the access
 * later, from the log below; read_storage, a register whose read value is its storage (no
 * read hook, or one whose value its owner publishes there) and whose writes are Python's;
 * from class_base on, a declared register that reads its storage and takes writes as
 * classes[code - class_base] says, its effect through irq; NULL irq: such writes are
 * Python's), and the GGTT from ggtt_offset. The map changes between calls (a published
 * register's gate closes while its read must run Python first). */
struct dm_gen_bar0 {
    uint8_t *regs;
    const uint8_t *plain;
    const struct dm_reg_class *classes;
    uint32_t class_base;
    uint32_t nclasses;
    uint32_t told_later;  /* the map's code for storage whose unlisted hook hears later */
    uint32_t read_storage;  /* the map's code for reads from storage, writes to Python */
    uint64_t mmio_size;
    uint64_t ggtt_offset;
    uint64_t size;       /* the region's size */
    struct dm_ggtt *ggtt;
    const struct dm_irq *irq;
    const uint8_t *timed;     /* per dword, 1: read from storage only before *until_ns */
    const int64_t *until_ns;  /* CLOCK_MONOTONIC (RegisterFile.until, ReadGate.open_until) */
    uint32_t nunlisted;
    uint32_t reserved;
    uint32_t unlisted[256];  /* accesses for the unlisted hook, in order: dword offset | 1 if a write */
};

struct dm_frames;  /* dm_blit.h: the DMA windows as the engines reach their frames */

/* The aperture (plugins/gen_vgpu/aperture.py) for writes: graphics page p of [0, size) is the
 * GGTT's shadow[p], reached through frames' windows; a present entry of scratch_hfn is scratch
 * (the write is dropped). C takes a write only while no fence register is valid (fence_count
 * of them in BAR0's storage at fence_regs, fence_stride bytes apart, valid_bit in the low
 * dword) and every page it touches is scratch, not present, or writable in a window; anything
 * else is Python's (its fences, its warning about a window it cannot write). */
struct dm_aperture {
    uint64_t size;
    const uint64_t *shadow;
    uint64_t scratch_hfn;
    const struct dm_frames *frames;
    const uint8_t *fence_regs;
    uint32_t fence_count;
    uint32_t fence_stride;
    uint32_t valid_bit;
    uint32_t reserved;
};

/* One client connection in the RUNNING state. */
struct dm_conn {
    uint32_t max_msg_size;
    uint32_t max_xfer;
    uint32_t multi_max_count;
    uint32_t multi_data_size;
    uint32_t cmd_read;
    uint32_t cmd_write;
    uint32_t cmd_write_multi;
    uint32_t type_mask;
    uint32_t type_command;
    uint32_t no_reply;
    uint32_t reply_flags;
    uint32_t write_multiple;  /* REGION_WRITE_MULTI negotiated */
    uint32_t region_index;    /* the region bar serves */
    uint32_t multi_done;      /* WRITE_MULTI entries of the message at pos already applied */
    int32_t sock_fd;          /* replies are sent here (non-blocking); -1: left in out for the caller */
    struct dm_gen_bar0 *bar;
    struct dm_aperture *aperture;  /* region aperture_index, or NULL: its accesses are Python's */
    uint32_t aperture_index;
    uint32_t reserved;
    uint8_t *out;             /* replies not sent yet, for the caller to send in order */
    uint64_t out_cap;
    uint64_t out_len;
    uint64_t pos;             /* in: where to start; out: the end of what was handled */
    uint64_t requests;        /* handled, counted up; the caller folds and clears */
    uint64_t posted;
    /* Out, with DM_PYTHON: the message at pos is a REGION_READ or REGION_WRITE of one whole
     * register dword that passed every check the Python path makes before the register file
     * (the decoder's, Device.check_write's or region_read's, Bar0._accepted), Python's only
     * for what its register does: DM_HAND_READ or DM_HAND_WRITE (0: not such a message), its
     * size, id and whether it waits for a reply, and the dword's offset and (a write) value. */
    uint32_t hand;
    uint32_t hand_size;
    uint64_t hand_offset;
    uint32_t hand_value;
    uint16_t hand_id;
    uint16_t hand_reply;
};

/* The event loop's wait while the client's messages are all C's: epoll_wait on the loop's own
 * epoll set, and as long as the only thing ready is the client's socket for reading, read
 * into the framer's buffer and drain, without coming back to Python. */
struct dm_serve {
    int32_t epfd;
    int32_t sock_fd;
    int64_t timeout_ns;       /* -1: no limit */
    int32_t timer_fd;         /* dm_serve_timer's, in the epoll set; -1: none (epoll_wait times out) */
    int32_t nevents;          /* out, DM_SERVE_EVENTS */
    int64_t armed_ns;         /* in/out: when timer_fd fires (CLOCK_MONOTONIC); -1: not armed */
    uint64_t events[16];      /* out: fd << 32 | epoll events */
    uint8_t *buf;             /* the framer's buffer */
    uint64_t cap;
    uint64_t pos;             /* in/out: its read position */
    uint64_t end;             /* in/out: the end of the bytes received */
    uint64_t shifted;         /* out: bytes dropped from its front (the framer's stream base moves on) */
    uint64_t min_room;        /* read only with at least this much room; else Python compacts */
    uint64_t got;             /* out, DM_SERVE_READ: bytes of the last read (0: EOF) */
    int32_t msg_flags;        /* out, DM_SERVE_READ: recvmsg's flags (MSG_CTRUNC) */
    int32_t nfds;             /* out, DM_SERVE_READ: fds that came with the last read */
    int32_t fds[253];
    /* An access dm_drain hands over (dm_conn.hand) is taken inside the wait: pos is moved
     * past it and hand(hand_ctx) called (Python's: the register's handler, its reply sent);
     * nonzero, the wait goes on; 0, it comes back as DM_SERVE_READ for the loop to go round.
     * NULL: every hand-over comes back. */
    int (*hand)(void *ctx);
    void *hand_ctx;
};

uint32_t dm_abi_version(void);
/* A one-shot timer for dm_serve's waits: a timerfd (non-blocking, close-on-exec), or -1. The
 * caller adds it to the epoll set and reads it when the set reports it outside dm_serve. */
int dm_serve_timer(void);
int dm_serve(struct dm_conn *c, struct dm_serve *s);
int dm_drain(struct dm_conn *c, const uint8_t *buf, uint64_t end);

#endif
