/* The command scanner's compiled walk (see dm_scan.h). Each validator answers one question:
 * would the Python decoder and check accept this command in this frame? Any doubt is a no,
 * and a no only means Python looks at the command itself. The property tests scan the same
 * buffers on both paths (tests/unit/gen_vgpu/test_cmd_scan_accel.py). */
#include "dm_scan.h"

#define KEY_SHIFT 22
#define BIT(n) (1u << (n))
#define LRI_MAX_FIELD (2 * 126 - 1)

/* cmd/decode.py's _address: bits 63:48 zero or a copy of bit 47. */
static inline int address48(uint32_t lo, uint32_t hi, uint64_t *out)
{
    uint32_t upper = hi & 0xFFFF0000u;
    if (upper && (upper != 0xFFFF0000u || !(hi & 0x8000u)))
        return 0;
    *out = ((uint64_t)(hi & 0xFFFF) << 32) | lo;
    return 1;
}

/* _dword_address: dword aligned as well. */
static inline int dword_address(const uint32_t *b, uint64_t *out)
{
    return !(b[0] & 3) && address48(b[0], b[1], out);
}

/* cmd/frame.py's ggtt_access: a privileged buffer, and [a, a + size) inside one span of the
 * graphics memory (graphics_memory.py's contains). */
static inline int ggtt_ok(const struct dm_scan_frame *f, uint64_t a, uint64_t size)
{
    if (!f->privileged)
        return 0;
    for (uint32_t i = 0; i < f->nspans; i++)
        if (f->span_start[i] <= a && a < f->span_end[i])
            return f->span_end[i] - a >= size;
    return 0;
}

/* _register: a dword-aligned MMIO offset. */
static inline int register_ok(const struct dm_scan_table *t, uint32_t dw)
{
    return !(dw & 3) && dw < t->mmio_size;
}

static inline int listed(const uint8_t *map, uint32_t nregs, uint32_t reg)
{
    uint32_t i = reg >> 2;
    return i < nregs && ((map[i >> 3] >> (i & 7)) & 1);
}

static inline int writable(const struct dm_scan_table *t, uint32_t reg)
{
    return register_ok(t, reg) && listed(t->writable, t->nregs, reg);
}

static inline int readable(const struct dm_scan_table *t, uint32_t reg)
{
    return register_ok(t, reg) && listed(t->readable, t->nregs, reg);
}

/* The post-sync write of MI_FLUSH_DW and PIPE_CONTROL (frame.py's _post_sync). */
static inline int post_sync_ok(const struct dm_scan_frame *f, int index, int ggtt, uint64_t a, uint64_t size)
{
    if (index)
        return f->privileged != 0;
    return !ggtt || ggtt_ok(f, a, size);
}

static int sdi(const struct dm_scan_frame *f, const uint32_t *b, uint32_t n, uint32_t dw0)
{
    int qword = (dw0 & BIT(21)) != 0;
    uint64_t a;
    if (qword != (n == 5) || b[1] & (qword ? 7u : 3u) || !address48(b[1], b[2], &a))
        return 0;
    return !(dw0 & BIT(22)) || ggtt_ok(f, a, qword ? 8 : 4);
}

static int lri(const struct dm_scan_table *t, const uint32_t *b, uint32_t n)
{
    for (uint32_t i = 1; i < n; i += 2)
        if (!writable(t, b[i]))
            return 0;
    return 1;
}

static int srm(const struct dm_scan_frame *f, const uint32_t *b, uint32_t dw0)
{
    uint64_t a;
    if (!dword_address(b + 2, &a) || !readable(f->table, b[1]))
        return 0;
    return !(dw0 & BIT(22)) || ggtt_ok(f, a, 4);
}

static int flush_dw(const struct dm_scan_frame *f, const uint32_t *b, uint32_t n, uint32_t dw0)
{
    uint32_t op = (dw0 >> 14) & 3, lo = b[1];
    int index = (dw0 & BIT(21)) != 0;
    uint64_t a, size = 0;
    if (op == 2 || lo & 3 || !address48(lo & ~7u, b[2], &a))
        return 0;
    if (op == 1)
        size = n == 5 ? 8 : 4;
    else if (op == 3)
        size = 8;
    if (size && index && a + size > f->pphwsp_size)
        return 0;
    return op == 0 || post_sync_ok(f, index, (lo & 4) != 0, a, size);
}

static int pipe_control(const struct dm_scan_frame *f, const uint32_t *b)
{
    uint32_t flags = b[1], op = (flags >> 14) & 3, lo = b[2];
    int index = (flags & BIT(21)) != 0;
    uint64_t a;
    if (flags & BIT(23) || !address48(lo, b[3], &a))
        return 0;
    if (op == 0)
        return 1;
    if (lo & 7 || (index && a + 8 > f->pphwsp_size))
        return 0;
    return post_sync_ok(f, index, (flags & BIT(24)) != 0, a, 8);
}

/* decode.py's _alu. */
static inline int alu_source(uint32_t c)
{
    return c < 16 || c == 0x31 || c == 0x32 || c == 0x33;
}

static int math(const uint32_t *b, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        uint32_t dw = b[i], opcode = dw >> 20, a = (dw >> 10) & 0x3FF, c = dw & 0x3FF;
        int ok;
        switch (opcode) {
        case 0x000: case 0x100: case 0x101: case 0x102: case 0x103: case 0x104:
            ok = a == 0 && c == 0;
            break;
        case 0x080: case 0x480:
            ok = (a == 0x20 || a == 0x21) && alu_source(c);
            break;
        case 0x081: case 0x481:
            ok = (a == 0x20 || a == 0x21) && c == 0;
            break;
        case 0x180: case 0x580:
            ok = a < 16 && alu_source(c);
            break;
        default:
            ok = 0;
        }
        if (!ok)
            return 0;
    }
    return 1;
}

static int lrm(const struct dm_scan_frame *f, const uint32_t *b, uint32_t dw0)
{
    uint64_t a;
    if (!register_ok(f->table, b[1]) || !dword_address(b + 2, &a) || !writable(f->table, b[1]))
        return 0;
    return !(dw0 & BIT(22)) || ggtt_ok(f, a, 4);
}

static int copy_mem_mem(const struct dm_scan_frame *f, const uint32_t *b, uint32_t dw0)
{
    uint64_t dst, src;
    if (!dword_address(b + 1, &dst) || !dword_address(b + 3, &src))
        return 0;
    if (dw0 & BIT(22) && !ggtt_ok(f, src, 4))
        return 0;
    return !(dw0 & BIT(21)) || ggtt_ok(f, dst, 4);
}

static int atomic(const struct dm_scan_frame *f, const uint32_t *b, uint32_t n, uint32_t dw0)
{
    uint32_t code = (dw0 >> 8) & 0xFF, op = code & 0xF;
    int qword = (code & 0x20) != 0, inline_data = (dw0 & BIT(18)) != 0;
    uint64_t a, size = qword ? 8 : 4;
    if (dw0 & (BIT(16) | BIT(21)) || code & ~0x2Fu || !op)
        return 0;
    if (((dw0 >> 19) & 3) != (uint32_t)qword || inline_data != (n == 11))
        return 0;
    if (!inline_data && op != 0x5 && op != 0x6 && op != 0xF)  /* INC, DEC, PREDEC */
        return 0;
    if (!dword_address(b + 1, &a) || a & (size - 1))
        return 0;
    return !(dw0 & BIT(22)) || ggtt_ok(f, a, size);
}

static int sdi_index(const struct dm_scan_frame *f, const uint32_t *b, uint32_t n, uint32_t dw0)
{
    int qword = (dw0 & BIT(21)) != 0;
    uint64_t size = qword ? 8 : 4, offset = b[1];
    return qword == (n == 4) && !(offset & (size - 1)) && offset + size <= f->pphwsp_size;
}

static int cond_bb_end(const struct dm_scan_frame *f, const uint32_t *b, uint32_t dw0)
{
    uint64_t a;
    if (!(dw0 & BIT(21)) || !dword_address(b + 2, &a) || f->level == 0)
        return 0;
    return !(dw0 & BIT(22)) || ggtt_ok(f, a, 4);
}

static int semaphore_wait(const struct dm_scan_frame *f, const uint32_t *b, uint32_t dw0)
{
    uint64_t a;
    if (!(dw0 & BIT(15)) || ((dw0 >> 12) & 7) >= 6 || !dword_address(b + 2, &a))
        return 0;
    return !(dw0 & BIT(22)) || ggtt_ok(f, a, 4);
}

/* The blitter's fields (decode.py's _pitch, _br13, _corner, _rect, _tiled_address). */
static inline int pitch_ok(uint32_t dw, int tiled)
{
    uint32_t pitch = dw & 0xFFFF;
    if (pitch & 0x8000)
        return 0;
    return tiled ? (pitch * 4) % 128 == 0 : !(pitch & 3);
}

static inline int br13_ok(uint32_t dw, uint32_t rop, int tiled)
{
    return !(dw >> 26) && ((dw >> 24) & 3) == 3 && ((dw >> 16) & 0xFF) == rop && pitch_ok(dw, tiled);
}

static inline int corner_ok(uint32_t dw)
{
    return !(dw & 0x80008000u);
}

static inline int rect_ok(const uint32_t *b)
{
    return corner_ok(b[0]) && corner_ok(b[1]) && (b[1] & 0xFFFF) >= (b[0] & 0xFFFF) && b[1] >> 16 >= b[0] >> 16;
}

static inline int surface_ok(const uint32_t *b, int tiled)
{
    uint64_t a;
    return address48(b[0], b[1], &a) && !(tiled && a & 0xFFF);
}

static int color_blt(const uint32_t *b, uint32_t dw0)
{
    int tiled = (dw0 & BIT(11)) != 0;
    return (dw0 & (3u << 20)) == 3u << 20 && br13_ok(b[1], 0xF0, tiled) && rect_ok(b + 2) && surface_ok(b + 4, tiled);
}

static int src_copy_blt(const uint32_t *b, uint32_t dw0)
{
    int dst_tiled = (dw0 & BIT(11)) != 0, src_tiled = (dw0 & BIT(15)) != 0;
    return (dw0 & (3u << 20)) == 3u << 20 && br13_ok(b[1], 0xCC, dst_tiled) && rect_ok(b + 2) &&
           surface_ok(b + 4, dst_tiled) && corner_ok(b[6]) && !(b[7] >> 16) && pitch_ok(b[7], src_tiled) &&
           surface_ok(b + 8, src_tiled);
}

/* The entry for a header (dispatch.py's lookup), or NULL. */
static inline const struct dm_scan_entry *lookup(const struct dm_scan_table *t, uint32_t dw0)
{
    int32_t i = t->slots[dw0 >> KEY_SHIFT];
    while (i >= 0) {
        const struct dm_scan_entry *e = &t->entries[i];
        if ((dw0 & e->mask) == e->header)
            return e;
        i = e->next;
    }
    return 0;
}

/* The command's length from its header (spec.py's CommandSpec.length), or 0 where Python
 * refuses it. */
static inline uint32_t length(const struct dm_scan_entry *e, uint32_t dw0)
{
    uint32_t field = dw0 & e->len_mask;
    switch (e->rule) {
    case DM_SCAN_ONE:
        return 1;
    case DM_SCAN_GFX:
        return ((dw0 >> 27) & 3) == 1 ? 1 : (dw0 & 0xFF) + 2;
    case DM_SCAN_ANY:
        return field + 2;
    case DM_SCAN_LRI:
        return (field & 1) && field <= LRI_MAX_FIELD ? field + 2 : 0;
    default:
        return field + 2 < 64 && (e->lengths >> (field + 2)) & 1 ? field + 2 : 0;
    }
}

static int valid(const struct dm_scan_frame *f, const struct dm_scan_entry *e, const uint32_t *b, uint32_t n,
                 uint32_t dw0)
{
    switch (e->kind) {
    case DM_SCAN_K_PLAIN:
        return 1;
    case DM_SCAN_K_SDI:
        return sdi(f, b, n, dw0);
    case DM_SCAN_K_LRI:
        return lri(f->table, b, n);
    case DM_SCAN_K_SRM:
        return srm(f, b, dw0);
    case DM_SCAN_K_FLUSH_DW:
        return flush_dw(f, b, n, dw0);
    case DM_SCAN_K_PIPE_CONTROL:
        return pipe_control(f, b);
    case DM_SCAN_K_MATH:
        return math(b, n);
    case DM_SCAN_K_LRR:
        return readable(f->table, b[1]) && writable(f->table, b[2]);
    case DM_SCAN_K_LRM:
        return lrm(f, b, dw0);
    case DM_SCAN_K_COPY_MEM_MEM:
        return copy_mem_mem(f, b, dw0);
    case DM_SCAN_K_ATOMIC:
        return atomic(f, b, n, dw0);
    case DM_SCAN_K_SDI_INDEX:
        return sdi_index(f, b, n, dw0);
    case DM_SCAN_K_COND_BB_END:
        return cond_bb_end(f, b, dw0);
    case DM_SCAN_K_SEMAPHORE_WAIT:
        return semaphore_wait(f, b, dw0);
    case DM_SCAN_K_COLOR_BLT:
        return color_blt(b, dw0);
    case DM_SCAN_K_SRC_COPY_BLT:
        return src_copy_blt(b, dw0);
    default:
        return 0;
    }
}

uint32_t dm_scan_walk(const struct dm_scan_frame *f, const uint32_t *buf, uint32_t pos, uint32_t end,
                      uint32_t limit, uint32_t *positions, uint32_t *walked, uint32_t *npositions)
{
    const struct dm_scan_table *t = f->table;
    uint32_t count = 0, listed_count = 0;
    while (pos < end && count < limit) {
        uint32_t dw0 = buf[pos];
        const struct dm_scan_entry *e = lookup(t, dw0);
        if (!e || e->kind == DM_SCAN_K_STOP || dw0 & e->reserved)
            break;
        uint32_t n = length(e, dw0);
        if (!n || n > end - pos || !valid(f, e, buf + pos, n, dw0))
            break;
        if (!e->skip) {
            positions[listed_count++] = pos;
        } else if (n == 1) {
            /* A run of the same skipped dword (MI_NOOP padding, MI_ARB_CHECK): checked once. */
            uint32_t stop = end - pos < limit - count ? end : pos + (limit - count);
            uint32_t p = pos + 1;
            while (p < stop && buf[p] == dw0)
                p++;
            count += p - pos;
            pos = p;
            continue;
        }
        count++;
        pos += n;
    }
    *walked = count;
    *npositions = listed_count;
    return pos;
}
