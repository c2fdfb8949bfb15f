/* The compiled accelerator: REGION_READ, REGION_WRITE and REGION_WRITE_MULTI messages cut
 * from a receive buffer and applied to the GEN vGPU's BAR0 in one call.
 *
 * It does exactly what the Python path does for the messages it takes, and takes only those
 * whose every check passes and whose every effect it can reproduce: registers
 * devmodel/device/registers.py marks (plain storage, declared registers without hooks by
 * their write class, and reads of registers whose read value is in storage) and
 * GGTT entries with the GGTT's bookkeeping (owner codes, pending halves, counts, counters,
 * unbacked bounds) kept as plugins/gen_vgpu/gtt/ggtt.py keeps it. Anything else, and any
 * message that would be an error, stops the drain before it (DM_PYTHON) so that Python
 * answers it with its own checks, errno and log line.
 *
 * Replies go straight to the client's socket when the caller gives its fd (its outbox is
 * empty); whatever the socket does not take is left for the outbox.
 *
 * Little-endian hosts only (the wire and the register file's storage are read with memcpy);
 * devmodel/accel.py does not load the module elsewhere.
 */
#define _GNU_SOURCE /* MSG_DONTWAIT, MSG_CMSG_CLOEXEC */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <time.h>

#include "dm_accel.h"
#include "dm_blit.h"

#define HEADER_SIZE ((uint32_t)sizeof(struct dm_header))
#define ACCESS_SIZE ((uint32_t)sizeof(struct dm_region_access))
#define PAGE_SHIFT 12

uint32_t dm_abi_version(void) { return DM_ABI_VERSION; }

/* --- the GGTT ------------------------------------------------------------------------- */

static void add_delta(struct dm_ggtt *g, uint32_t code, int64_t d)
{
    for (uint32_t i = 0; i < g->ndeltas; i++) {
        if (g->deltas[i].code == code) {
            g->deltas[i].delta += d;
            return;
        }
    }
    /* room for two new codes was checked before the write began */
    g->deltas[g->ndeltas].code = code;
    g->deltas[g->ndeltas].delta = d;
    g->ndeltas++;
}

/* Ggtt._retag */
static void retag(struct dm_ggtt *g, uint64_t index, uint32_t code)
{
    uint32_t old = g->owner[index];
    if (old == code)
        return;
    g->owner[index] = code;
    add_delta(g, old, -1);
    add_delta(g, code, 1);
    if (old == g->code_unbacked)
        g->unbacked--;
    if (code == g->code_unbacked)
        g->unbacked++;
}

/* DmaMap.find(gfn << 12, 4096): the window with the greatest iova at or below the page's,
 * if the whole page is inside it. */
static const struct dm_window *find_window(const struct dm_ggtt *g, uint64_t iova)
{
    uint32_t lo = 0, hi = g->nwindows;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (g->windows[mid].iova <= iova)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return 0;
    const struct dm_window *w = &g->windows[lo - 1];
    return iova + 4096 <= w->end ? w : 0;
}

enum shadow_kind { PENDING, ABSENT, UNBACKED, BACKED };

/* Ggtt.write: everything that can stop the write is decided before anything changes. */
static int ggtt_write(struct dm_ggtt *g, uint64_t index, uint64_t value, uint32_t width, int high)
{
    if (!g->synced)
        return DM_NEED_SYNC;
    if (g->ndeltas + 2 > sizeof g->deltas / sizeof g->deltas[0])
        return DM_NEED_ROOM;
    uint64_t e;
    int update;
    if (width == 8) {
        e = value;
        update = 1;
    } else {
        uint64_t old = g->guest[index];
        e = high ? (old & 0xFFFFFFFFu) | (value << 32) : (old & ~(uint64_t)0xFFFFFFFFu) | value;
        update = g->owner[index] == (high ? g->code_pending_low : g->code_pending_high);
    }
    enum shadow_kind kind;
    uint64_t shadow = g->scratch_entry, gfn = 0;
    uint32_t code;
    if (!update) {
        kind = PENDING;
        code = high ? g->code_pending_high : g->code_pending_low;
    } else if (!(e & g->present_bit)) {
        kind = ABSENT;
        shadow = g->absent_entry;
        code = g->code_none;
    } else {
        gfn = (e & g->addr_mask) >> PAGE_SHIFT;
        const struct dm_window *w = find_window(g, gfn << PAGE_SHIFT);
        if (!w) {
            kind = UNBACKED;
            code = g->code_unbacked;
        } else {
            if (!w->code) {
                g->need_window = (uint32_t)(w - g->windows);
                return DM_NEED_CODE;
            }
            uint64_t pfn = w->hfn_base + gfn - (w->iova >> PAGE_SHIFT);
            /* PteOps.set_pfn refuses a frame outside the entry's frame bits; the window
             * table holds none such (Bar0Accel checks), so this never stops a batch. */
            if (pfn >> (64 - PAGE_SHIFT) || ((pfn << PAGE_SHIFT) & ~g->addr_mask))
                return DM_PYTHON;
            kind = BACKED;
            shadow = (e & ~g->addr_mask) | (pfn << PAGE_SHIFT);
            code = w->code;
        }
    }
    g->writes++;
    if (width != 8)
        g->partial_writes++;
    g->guest[index] = e;
    g->shadow[index] = shadow;
    if (kind == PENDING || kind == UNBACKED)
        g->scratch_mappings++;
    if (kind == UNBACKED) {
        /* Ggtt._widen_unbacked, before the retag as there */
        if (g->unbacked == 0) {
            g->unbacked_lo = g->unbacked_hi = gfn;
        } else {
            if (gfn < g->unbacked_lo)
                g->unbacked_lo = gfn;
            if (gfn > g->unbacked_hi)
                g->unbacked_hi = gfn;
        }
    }
    retag(g, index, code);
    return DM_DONE;
}

/* --- BAR0 ----------------------------------------------------------------------------- */

/* Device.check_write / region_read's bounds (Region.check) */
static int in_region(const struct dm_gen_bar0 *b, uint64_t offset, uint64_t count)
{
    return offset <= b->size && count <= b->size - offset;
}

/* Bar0._accepted: widths and alignment the contract serves, outside the unbacked gap */
static int accepted(const struct dm_gen_bar0 *b, uint64_t offset, uint32_t count)
{
    if (offset >= b->ggtt_offset) {
        if (count != 4 && count != 8)
            return 0;
    } else if (count != 1 && count != 2 && count != 4 && count != 8) {
        return 0;
    }
    if (offset & (count - 1))
        return 0;
    return offset < b->mmio_size || offset >= b->ggtt_offset;
}

static const struct dm_reg_class *reg_class(const struct dm_gen_bar0 *b, uint64_t dword)
{
    uint32_t code = b->plain[dword];
    return code >= b->class_base && code - b->class_base < b->nclasses ? &b->classes[code - b->class_base] : 0;
}

/* How an access reaches a register: a read, a REGION_WRITE of at most 4 bytes, or a write of
 * 8 bytes or within a WRITE_MULTI batch (two or more stores, of which a later one must not
 * find out that it is Python's after an earlier one acted). */
enum access { READ, SINGLE_WRITE, MULTIPLE_WRITE };

/* Whether C may serve this dword: marked, and for a write not one whose writes are Python's,
 * nor one whose write effect C does not run here. */
static int marked(const struct dm_gen_bar0 *b, uint64_t dword, enum access how)
{
    uint8_t code = b->plain[dword];
    if (!code || how == READ)
        return code != 0;
    if (code == b->read_storage)
        return 0;
    const struct dm_reg_class *k = reg_class(b, dword);
    if (!k || !k->effect)
        return 1;
    /* an effect may leave the write to Python (irq_effect): the only store of its message */
    return how == SINGLE_WRITE && b->irq &&
           (k->effect == b->irq->effect_reevaluate || k->effect == b->irq->effect_master);
}

/* Whether C may serve this register access: every dword it touches is marked. */
static int plain_registers(const struct dm_gen_bar0 *b, uint64_t offset, uint32_t count, enum access how)
{
    uint64_t dword = offset >> 2;
    if (count == 8 && how == SINGLE_WRITE)
        how = MULTIPLE_WRITE;
    return marked(b, dword, how) && (count != 8 || marked(b, dword + 1, how));
}

/* Whether C may serve an access at all: accepted, and a marked register or a GGTT entry. */
static int servable(const struct dm_gen_bar0 *b, uint64_t offset, uint32_t count, enum access how)
{
    if (!accepted(b, offset, count))
        return 0;
    if (offset >= b->ggtt_offset)
        return b->ggtt && ((offset - b->ggtt_offset) >> 3) < b->ggtt->entries;
    return plain_registers(b, offset, count, how);
}

static uint32_t reg_get(const struct dm_gen_bar0 *b, uint64_t dword)
{
    uint32_t v;
    memcpy(&v, b->regs + (dword << 2), 4);
    return v;
}

static void reg_set(struct dm_gen_bar0 *b, uint64_t dword, uint32_t v)
{
    memcpy(b->regs + (dword << 2), &v, 4);
}

/* Interrupts._evaluate after the store of ``new`` into a register whose write effect it is,
 * when it delivers nothing: the master register's status bits published into its storage.
 * A write after which the line would be raised or lowered is Python's (its counters, trace
 * event and delivery): the store is undone and nothing has changed. */
static int irq_effect(struct dm_gen_bar0 *b, const struct dm_reg_class *k, uint64_t dword, uint32_t old,
                      uint32_t new)
{
    const struct dm_irq *q = b->irq;
    const uint32_t *s = q->shared;
    uint64_t dwords = b->mmio_size >> 2;
    uint32_t n = s[1] < q->max_banks ? s[1] : q->max_banks, status = 0;
    reg_set(b, dword, new);
    for (uint32_t i = 0; i < n; i++) {
        const uint32_t *e = s + 2 + 4 * i;  /* IIR dword, IER dword, bits, master bit */
        if (e[0] < dwords && e[1] < dwords && reg_get(b, e[0]) & reg_get(b, e[1]) & e[2])
            status |= e[3];
    }
    uint32_t master = (reg_get(b, q->master) & q->enable) | status;
    int pending = (master & q->enable) && (master & ~q->enable);
    int edge = k->effect == q->effect_master && (new & q->enable);
    int asserted = s[0] != 0;
    if (pending ? edge || !asserted : asserted) {
        reg_set(b, dword, old);
        return DM_PYTHON;
    }
    reg_set(b, q->master, master);
    return DM_DONE;
}

/* RegisterFile.write32 of a register C serves (and the write hook's effect, if it has one) */
static int reg_write32(struct dm_gen_bar0 *b, uint64_t dword, uint32_t value)
{
    const struct dm_reg_class *k = reg_class(b, dword);
    if (!k) {
        reg_set(b, dword, value);
        return DM_DONE;
    }
    uint32_t old = reg_get(b, dword), new;
    if (k->masked) {
        uint32_t sel = (value >> 16) & k->rw_mask & 0xFFFFu;
        new = (old & ~sel) | (value & sel);
    } else {
        new = (old & ~k->rw_mask) | (value & k->rw_mask);
    }
    if (k->w1c)
        new = (new & ~k->w1c) | (old & k->w1c & ~value);
    if (k->effect)
        return irq_effect(b, k, dword, old, new);
    reg_set(b, dword, new);
    return DM_DONE;
}

/* Bar0._untouched: what the bytes a narrow write leaves alone contribute */
static uint32_t reg_untouched(const struct dm_gen_bar0 *b, uint64_t dword)
{
    uint32_t v = reg_get(b, dword);
    const struct dm_reg_class *k = reg_class(b, dword);
    if (k) {
        v &= ~k->w1c;
        if (k->masked)
            v &= 0xFFFFu;
    }
    return v;
}

/* Room in the unlisted log for what a register access adds to it. */
static int unlisted_room(const struct dm_gen_bar0 *b, uint64_t offset, uint32_t count)
{
    if (offset >= b->ggtt_offset)
        return 1;
    uint64_t dword = offset >> 2;
    uint32_t need = (b->plain[dword] == b->told_later) + (count == 8 && b->plain[dword + 1] == b->told_later);
    return b->nunlisted + need <= sizeof b->unlisted / sizeof b->unlisted[0];
}

/* RegisterFile.read32/write32 tell the unlisted hook of each dword, low first. */
static void note_unlisted(struct dm_gen_bar0 *b, uint64_t offset, uint32_t count, uint32_t is_write)
{
    uint64_t dword = offset >> 2;
    for (uint64_t d = dword; d < dword + (count == 8 ? 2 : 1); d++)
        if (b->plain[d] == b->told_later)
            b->unlisted[b->nunlisted++] = (uint32_t)(d << 2) | is_write;
}

/* Bar0.write of a servable access */
static int bar_write(struct dm_gen_bar0 *b, uint64_t offset, const uint8_t *data, uint32_t count)
{
    if (offset >= b->ggtt_offset) {
        uint64_t rel = offset - b->ggtt_offset, value = 0;
        memcpy(&value, data, count);
        return ggtt_write(b->ggtt, rel >> 3, value, count, (rel & 4) != 0);
    }
    if (!unlisted_room(b, offset, count))
        return DM_NEED_ROOM;
    uint64_t dword = offset >> 2;
    if (!reg_class(b, dword) && (count != 8 || !reg_class(b, dword + 1))) {
        memcpy(b->regs + offset, data, count);  /* plain storage: the bytes and nothing else */
    } else if (count == 8) {
        uint32_t lo, hi;
        memcpy(&lo, data, 4);
        memcpy(&hi, data + 4, 4);
        reg_write32(b, dword, lo);  /* no effect (servable): both DM_DONE */
        reg_write32(b, dword + 1, hi);
    } else {
        uint32_t v = 0;
        memcpy(&v, data, count);
        if (count != 4) {
            uint32_t shift = 8 * (uint32_t)(offset & 3);
            uint32_t field = (count == 1 ? 0xFFu : 0xFFFFu) << shift;
            v = (reg_untouched(b, dword) & ~field) | (v << shift);
        }
        int st = reg_write32(b, dword, v);
        if (st != DM_DONE)
            return st;  /* the effect's: nothing changed */
    }
    note_unlisted(b, offset, count, 1);
    return DM_DONE;
}

/* Bar0.read of a servable access with room in the unlisted log */
static void bar_read(struct dm_gen_bar0 *b, uint64_t offset, uint8_t *out, uint32_t count)
{
    if (offset >= b->ggtt_offset) {
        memcpy(out, (const uint8_t *)b->ggtt->guest + (offset - b->ggtt_offset), count);
    } else {
        memcpy(out, b->regs + offset, count);
        note_unlisted(b, offset, count, 0);
    }
}

/* --- the aperture ------------------------------------------------------------------------ */

/* Device.check_write's bounds, no valid fence (Aperture._detiled), and for every page the
 * access touches: Aperture._pages' page or scratch, never its warning. *addr[i]: where page i
 * of the access is written (0: dropped). */
static int aperture_servable(const struct dm_aperture *a, uint64_t offset, uint32_t count, uint64_t addr[2])
{
    if (offset > a->size || count > a->size - offset)
        return 0;
    for (uint32_t k = 0; k < a->fence_count; k++) {
        uint32_t lo;
        memcpy(&lo, a->fence_regs + (uint64_t)k * a->fence_stride, 4);
        if (lo & a->valid_bit)
            return 0;
    }
    uint64_t first = offset >> PAGE_SHIFT, last = (offset + count - 1) >> PAGE_SHIFT;
    for (uint64_t p = first; p <= last; p++) {
        uint64_t e = a->shadow[p], out = 0;
        const struct dm_frames *f = a->frames;
        if (e & f->present_bit && ((e & f->frame_mask) >> PAGE_SHIFT) != a->scratch_hfn) {
            dm_frames_resolve(f, (uint64_t)(uintptr_t)&a->shadow[p], 1, 1, &out);
            if (!out)
                return 0;
        }
        addr[p - first] = out;
    }
    return 1;
}

/* Aperture.write of an access aperture_servable passed (at most two pages: count <= 4096) */
static void aperture_write(uint64_t offset, const uint8_t *data, uint32_t count, const uint64_t addr[2])
{
    uint64_t in_page = offset & ((1u << PAGE_SHIFT) - 1);
    uint64_t n = (1u << PAGE_SHIFT) - in_page;
    if (n > count)
        n = count;
    if (addr[0])
        memcpy((uint8_t *)(uintptr_t)addr[0] + in_page, data, n);
    if (n < count && addr[1])
        memcpy((uint8_t *)(uintptr_t)addr[1], data + n, count - n);
}

/* --- messages ------------------------------------------------------------------------- */

/* Send what the socket takes now; what it does not stays at the front of out for the
 * caller's outbox (which also reports the errors: a send that fails here is repeated there). */
static void flush(struct dm_conn *c)
{
    if (c->sock_fd < 0 || !c->out_len)
        return;
    ssize_t n = send(c->sock_fd, c->out, c->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0)
        return;
    c->out_len -= (uint64_t)n;
    if (c->out_len)
        memmove(c->out, c->out + n, c->out_len);
}

static uint8_t *reply_room(struct dm_conn *c, uint32_t size)
{
    if (c->out_cap - c->out_len < size)
        flush(c);
    return c->out_cap - c->out_len >= size ? c->out + c->out_len : 0;
}

static void put_reply_header(struct dm_conn *c, uint8_t *at, const struct dm_header *req, uint32_t size)
{
    struct dm_header h = {req->msg_id, req->command, size, c->reply_flags, 0};
    memcpy(at, &h, HEADER_SIZE);
    c->out_len += size;
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* A published register whose gate is open only until a deadline (ReadGate.open_until),
 * read at or after it: its hook has work to do first (Python's). */
static int read_expired(const struct dm_gen_bar0 *b, uint64_t offset, uint32_t count)
{
    if (offset >= b->ggtt_offset)
        return 0;
    uint64_t dword = offset >> 2;
    if (!b->timed[dword] && !(count == 8 && b->timed[dword + 1]))
        return 0;
    return now_ns() >= *b->until_ns;
}

/* A whole register dword of the region, in bounds, that Bar0._accepted takes: when C leaves
 * such an access to Python, Python may take it from dm_conn.hand without decoding it again. */
static int hand_over(struct dm_conn *c, const struct dm_header *h, const struct dm_region_access *a, uint32_t kind,
                     const uint8_t *data, int reply)
{
    if (a->region == c->region_index && a->count == 4 && !(a->offset & 3) && a->offset < c->bar->mmio_size &&
        in_region(c->bar, a->offset, a->count)) {
        c->hand = kind;
        c->hand_size = h->size;
        c->hand_id = h->msg_id;
        c->hand_reply = (uint16_t)reply;
        c->hand_offset = a->offset;
        c->hand_value = 0;
        if (data)
            memcpy(&c->hand_value, data, 4);
    }
    return DM_PYTHON;
}

/* decode_region_read, Device.region_read, Bar0.read */
static int region_read(struct dm_conn *c, const struct dm_header *h, const uint8_t *p, uint32_t plen, int reply)
{
    struct dm_region_access a;
    if (plen != ACCESS_SIZE)
        return DM_PYTHON;
    memcpy(&a, p, ACCESS_SIZE);
    if (a.count > c->max_xfer || a.region != c->region_index || !a.count)
        return DM_PYTHON;
    if (!in_region(c->bar, a.offset, a.count) || !servable(c->bar, a.offset, a.count, READ) ||
        read_expired(c->bar, a.offset, a.count))
        return hand_over(c, h, &a, DM_HAND_READ, 0, reply);
    if (!unlisted_room(c->bar, a.offset, a.count))
        return DM_NEED_ROOM;
    if (!reply) {
        note_unlisted(c->bar, a.offset, a.count, 0);  /* a read nobody waits for is still heard */
        return DM_DONE;
    }
    uint32_t size = HEADER_SIZE + ACCESS_SIZE + a.count;
    uint8_t *at = reply_room(c, size);
    if (!at)
        return DM_OUT_FULL;
    memcpy(at + HEADER_SIZE, p, ACCESS_SIZE);
    bar_read(c->bar, a.offset, at + HEADER_SIZE + ACCESS_SIZE, a.count);
    put_reply_header(c, at, h, size);
    return DM_DONE;
}

/* decode_region_write, Device.check_write, Bar0.write */
static int region_write(struct dm_conn *c, const struct dm_header *h, const uint8_t *p, uint32_t plen, int reply)
{
    struct dm_region_access a;
    if (plen < ACCESS_SIZE)
        return DM_PYTHON;
    memcpy(&a, p, ACCESS_SIZE);
    if (a.count > c->max_xfer || plen != ACCESS_SIZE + a.count || !a.count)
        return DM_PYTHON;
    uint64_t addr[2];
    int to_aperture = c->aperture && a.region == c->aperture_index;
    if (to_aperture) {
        if (a.count > (1u << PAGE_SHIFT) || !aperture_servable(c->aperture, a.offset, a.count, addr))
            return DM_PYTHON;
    } else if (a.region != c->region_index || !in_region(c->bar, a.offset, a.count) ||
               !servable(c->bar, a.offset, a.count, SINGLE_WRITE)) {
        return hand_over(c, h, &a, DM_HAND_WRITE, p + ACCESS_SIZE, reply);
    }
    uint32_t size = HEADER_SIZE + ACCESS_SIZE;
    uint8_t *at = 0;
    if (reply && !(at = reply_room(c, size)))
        return DM_OUT_FULL;
    int st = DM_DONE;
    if (to_aperture)
        aperture_write(a.offset, p + ACCESS_SIZE, a.count, addr);
    else
        st = bar_write(c->bar, a.offset, p + ACCESS_SIZE, a.count);
    if (st == DM_PYTHON)  /* an effect left it to Python: nothing changed */
        return hand_over(c, h, &a, DM_HAND_WRITE, p + ACCESS_SIZE, reply);
    if (st != DM_DONE)
        return st;
    if (reply) {
        memcpy(at + HEADER_SIZE, p, ACCESS_SIZE);
        put_reply_header(c, at, h, size);
    }
    return DM_DONE;
}

/* decode_write_multi and the dispatcher's whole-batch check_write, then region_write_multi
 * from entry multi_done on. */
static int region_write_multi(struct dm_conn *c, const struct dm_header *h, const uint8_t *p, uint32_t plen,
                              int reply)
{
    const uint32_t entry_size = sizeof(struct dm_write_multi_entry);
    uint64_t wr_cnt;
    if (!c->write_multiple || plen < sizeof wr_cnt)
        return DM_PYTHON;
    memcpy(&wr_cnt, p, sizeof wr_cnt);
    if (wr_cnt == 0 || wr_cnt > c->multi_max_count || plen != sizeof wr_cnt + wr_cnt * entry_size)
        return DM_PYTHON;
    const uint8_t *entries = p + sizeof wr_cnt;
    struct dm_write_multi_entry e;
    /* A batch is BAR0's or the aperture's, never both: a register or GGTT write would change
     * what the aperture's later entries reach (a fence, a mapping) after they were checked. */
    uint64_t addr[2];
    uint32_t regions = 0;
    for (uint64_t k = 0; k < wr_cnt; k++) {
        memcpy(&e, entries + k * entry_size, entry_size);
        if (e.count == 0 || e.count > c->multi_data_size)
            return DM_PYTHON;
        if (c->aperture && e.region == c->aperture_index) {
            regions |= 2;
            if (!aperture_servable(c->aperture, e.offset, e.count, addr))
                return DM_PYTHON;
        } else if (e.region != c->region_index || !in_region(c->bar, e.offset, e.count) ||
                   !servable(c->bar, e.offset, e.count, MULTIPLE_WRITE)) {
            return DM_PYTHON;
        } else {
            regions |= 1;
        }
    }
    if (regions == 3)
        return DM_PYTHON;
    uint32_t size = HEADER_SIZE + (uint32_t)sizeof wr_cnt;
    uint8_t *at = 0;
    if (reply && !(at = reply_room(c, size)))
        return DM_OUT_FULL;
    for (uint64_t k = c->multi_done; k < wr_cnt; k++) {
        memcpy(&e, entries + k * entry_size, entry_size);
        if (regions == 2) {
            aperture_servable(c->aperture, e.offset, e.count, addr);  /* as checked: nothing moved */
            aperture_write(e.offset, e.data, e.count, addr);
            continue;
        }
        int st = bar_write(c->bar, e.offset, e.data, e.count);
        if (st != DM_DONE) {
            c->multi_done = (uint32_t)k;
            return st;
        }
    }
    c->multi_done = 0;
    if (reply) {
        memcpy(at + HEADER_SIZE, &wr_cnt, sizeof wr_cnt);
        put_reply_header(c, at, h, size);
    }
    return DM_DONE;
}

int dm_drain(struct dm_conn *c, const uint8_t *buf, uint64_t end)
{
    uint64_t pos = c->pos;
    int st = DM_DONE;
    c->hand = 0;
    while (end - pos >= HEADER_SIZE) {
        struct dm_header h;
        memcpy(&h, buf + pos, HEADER_SIZE);
        /* Framer.next_message's checks and the connection's request/reply split */
        if (h.size < HEADER_SIZE || h.size > c->max_msg_size || (h.flags & c->type_mask) != c->type_command) {
            st = DM_PYTHON;
            break;
        }
        if (h.size > end - pos)
            break;  /* not all here yet, or it carries fds: the framer's */
        const uint8_t *payload = buf + pos + HEADER_SIZE;
        uint32_t plen = h.size - HEADER_SIZE;
        int reply = !(h.flags & c->no_reply);
        if (h.command == c->cmd_read)
            st = region_read(c, &h, payload, plen, reply);
        else if (h.command == c->cmd_write)
            st = region_write(c, &h, payload, plen, reply);
        else if (h.command == c->cmd_write_multi)
            st = region_write_multi(c, &h, payload, plen, reply);
        else
            st = DM_PYTHON;
        if (st != DM_DONE)
            break;
        pos += h.size;
        c->requests++;
        if (!reply)
            c->posted++;
    }
    c->pos = pos;
    flush(c);
    return st;
}

/* --- the loop's wait ---------------------------------------------------------------------- */

int dm_serve_timer(void)
{
    return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
}

/* An epoll_wait with a timeout arms a kernel timer for every wait, and in a virtual machine
 * programming the timer is a trap to the hypervisor: about 1 us a message while the loop has a
 * timer pending (a lit pipe's frame clock always has). The timerfd is armed once per deadline
 * instead and the waits have none. A deadline later than the armed one keeps it: the early
 * expiry only sends the loop round once. So does one up to ARM_SLACK_NS earlier: the same
 * timer's deadline comes back a little different from each call (the caller's clock and C's
 * are read apart), and the armed one fires at most that late (epoll_wait's millisecond timeout
 * was rounded up by up to 1 ms). */
#define ARM_SLACK_NS 100000

static void arm(struct dm_serve *s, int64_t deadline, int64_t now)
{
    if (s->armed_ns >= 0 && s->armed_ns > now && s->armed_ns <= deadline + ARM_SLACK_NS)
        return;
    struct itimerspec when = {{0, 0}, {deadline / 1000000000, deadline % 1000000000}};
    if (timerfd_settime(s->timer_fd, TFD_TIMER_ABSTIME, &when, NULL) == 0)
        s->armed_ns = deadline;
    else
        s->timer_fd = -1; /* cannot happen with a valid fd; the waits then time out themselves */
}

static int timer_fired(struct dm_serve *s)
{
    uint64_t expirations;
    ssize_t r = read(s->timer_fd, &expirations, sizeof expirations);
    (void)r; /* EAGAIN: another reader drained it; either way it is disarmed */
    s->armed_ns = -1;
    return DM_SERVE_TIMEOUT;
}

static int hand_back(struct dm_serve *s, const struct epoll_event *ev, int n)
{
    s->nevents = n;
    for (int i = 0; i < n; i++)
        s->events[i] = (uint64_t)(uint32_t)ev[i].data.fd << 32 | ev[i].events;
    return DM_SERVE_EVENTS;
}

/* Reads in a row without asking epoll: while the client streams posted writes, the next
 * one is usually there already; the limit keeps the other fds and the timers heard. */
#define DIRECT_READS 64

int dm_serve(struct dm_conn *c, struct dm_serve *s)
{
    const int max_events = (int)(sizeof s->events / sizeof s->events[0]);
    int64_t now = now_ns();
    int64_t deadline = s->timeout_ns < 0 ? -1 : now + s->timeout_ns;
    if (deadline >= 0 && s->timer_fd >= 0)
        arm(s, deadline, now);
    union {
        struct cmsghdr align;
        uint8_t bytes[CMSG_SPACE(sizeof s->fds)];
    } control;
    struct epoll_event ev[16];
    int direct = 0;
    s->shifted = 0;
    s->nevents = 0;
    for (;;) {
        if (direct && deadline >= 0 && now_ns() >= deadline)
            return DM_SERVE_TIMEOUT;
        if (!direct) {
            int timeout = -1;
            if (deadline >= 0 && s->timer_fd < 0) {
                int64_t left = deadline - now_ns();
                /* rounded up: never back before the deadline */
                timeout = left > 0 ? (int)((left + 999999) / 1000000) : 0;
            }
            int n = epoll_wait(s->epfd, ev, max_events, timeout);
            if (n < 0)
                return hand_back(s, ev, 0); /* EINTR: a signal for Python's handlers */
            if (n == 0)
                return DM_SERVE_TIMEOUT;
            if (n == 1 && ev[0].data.fd == s->timer_fd && s->timer_fd >= 0)
                return timer_fired(s);
            if (n != 1 || ev[0].data.fd != s->sock_fd || ev[0].events != EPOLLIN)
                return hand_back(s, ev, n);
        }
        if (s->cap - s->end < s->min_room) {
            if (direct)
                return DM_SERVE_TIMEOUT; /* nothing else known ready: the loop goes round */
            return hand_back(s, ev, 1);
        }
        struct iovec iov = {s->buf + s->end, s->cap - s->end};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.bytes;
        msg.msg_controllen = sizeof control.bytes;
        ssize_t got = recvmsg(s->sock_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (got < 0) {
            if (errno == EAGAIN || errno == EINTR || direct) {
                direct = 0; /* (a direct read's error comes back through epoll) */
                continue;
            }
            return hand_back(s, ev, 1); /* Python's read meets the error and reports it */
        }
        s->end += (uint64_t)got;
        if (got == 0 || msg.msg_controllen || (msg.msg_flags & MSG_CTRUNC)) {
            s->got = (uint64_t)got;
            s->msg_flags = msg.msg_flags;
            s->nfds = 0;
            for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                    continue;
                size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int32_t);
                for (size_t i = 0; i < k && s->nfds < (int32_t)(sizeof s->fds / sizeof s->fds[0]); i++)
                    memcpy(&s->fds[s->nfds++], CMSG_DATA(cm) + i * sizeof(int32_t), sizeof(int32_t));
            }
            return DM_SERVE_READ;
        }
        uint64_t requests = c->requests, posted = c->posted;
        int replied = 0;
        c->pos = s->pos;
        int st = dm_drain(c, s->buf, s->end);
        s->pos = c->pos;
        /* Replies C wrote went out first (out is empty): the handler's reply follows them. */
        while (st == DM_PYTHON && c->hand && s->hand && !c->out_len) {
            s->pos = c->pos + c->hand_size;
            replied |= c->hand_reply;
            if (!s->hand(s->hand_ctx))
                break;
            c->pos = s->pos;
            st = dm_drain(c, s->buf, s->end);
            s->pos = c->pos;
        }
        if (st != DM_DONE || c->out_len) {
            s->got = (uint64_t)got;
            s->msg_flags = 0;
            s->nfds = 0;
            return DM_SERVE_READ;
        }
        if (s->pos == s->end) {
            s->shifted += s->end;
            s->pos = s->end = 0;
        }
        /* Only posted messages: the client is streaming, read again at once. A reply sent:
         * the client waits for it, so its next message is not there yet. */
        int only_posted = !replied && c->requests - requests == c->posted - posted;
        direct = only_posted && direct < DIRECT_READS ? direct + 1 : 0;
    }
}
