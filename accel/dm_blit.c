/* The blitter's compiled helpers (see dm_blit.h): what plugins/gen_vgpu/engine/blit.py does
 * with memoryviews, with memcpy and memset over host addresses the caller resolved. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include <math.h>
#include <string.h>
#include <time.h>
#include <wchar.h>

#include "dm_blit.h"
#include "dm_clones.h"

#define PAGE_SHIFT 12
#define PAGE_SIZE ((uint64_t)1 << PAGE_SHIFT)
#define PAGE_MASK (PAGE_SIZE - 1)

/* The window holding frame hfn, as [*lo, *hi), and the address of *lo's frame for the access;
 * 0 when the window does not permit it or has no fd, or when no window holds the frame (then
 * [hfn, hfn + 1)). */
static uint64_t find_window(const struct dm_frames *f, uint64_t hfn, uint32_t write, uint64_t *lo, uint64_t *hi)
{
    uint32_t a = 0, b = f->nwindows;
    while (a < b) {
        uint32_t mid = a + (b - a) / 2;
        if (f->windows[mid].hfn_end <= hfn)
            a = mid + 1;
        else
            b = mid;
    }
    const struct dm_frame_window *w = a < f->nwindows && f->windows[a].hfn_base <= hfn ? &f->windows[a] : NULL;
    if (w == NULL) {
        *lo = hfn, *hi = hfn + 1;
        return 0;
    }
    *lo = w->hfn_base, *hi = w->hfn_end;
    return w->addr && (write ? w->writable : w->readable) ? w->addr : 0;
}

/* out[0:n] for entries whose frames lie in one window [lo, hi) mapped at addr (not 0): each
 * entry once, branch-free, so the loop vectorizes. Returns whether an entry with the bits of
 * `need` named a frame outside the window (its out is 0: the caller looks it up). */
DM_VECTOR_CLONES
static uint64_t resolve_in_window(const uint64_t *entries, uint64_t n, uint64_t need, uint64_t mask, uint64_t lo,
                                  uint64_t hi, uint64_t addr, uint64_t *out)
{
    uint64_t origin = addr - (lo << PAGE_SHIFT), span = hi - lo, outside = 0; /* origin: modulo 2^64 */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t e = entries[i], hfn = (e & mask) >> PAGE_SHIFT;
        uint64_t counts = (e & need) == need, in = hfn - lo < span;
        out[i] = (counts & in) ? origin + (hfn << PAGE_SHIFT) : 0;
        outside |= counts & !in;
    }
    return outside;
}

/* out[0:n]: the host pages entries[0:n] map for the access, an entry counting when it has the
 * bits of `need` (present, and RW for a PPGTT write). */
static void resolve_entries(const struct dm_frames *f, uint64_t need, const uint64_t *entries, uint64_t n,
                            uint32_t write, uint64_t *out)
{
    /* in locals: out could alias *f as far as the compiler knows, which would reload them
     * after every store */
    uint64_t mask = f->frame_mask;
    /* The window of the last frame looked up, as [lo, hi) and the address of lo's frame (0:
     * the access is not permitted there): consecutive entries mostly share one. */
    uint64_t lo = 1, hi = 0, addr = 0, i = 0;
    while (i < n && (entries[i] & need) != need)
        out[i++] = 0;
    if (i == n)
        return;
    /* Most tables map into one window: all of it at once, then only what lies elsewhere. */
    addr = find_window(f, (entries[i] & mask) >> PAGE_SHIFT, write, &lo, &hi);
    int again = addr == 0 || resolve_in_window(entries + i, n - i, need, mask, lo, hi, addr, out + i);
    for (; again && i < n; i++) {
        uint64_t e = entries[i];
        if ((e & need) != need) {
            out[i] = 0;
            continue;
        }
        uint64_t hfn = (e & mask) >> PAGE_SHIFT;
        if (hfn < lo || hfn >= hi)
            addr = find_window(f, hfn, write, &lo, &hi);
        out[i] = addr ? addr + ((hfn - lo) << PAGE_SHIFT) : 0;
    }
}

void dm_frames_resolve(const struct dm_frames *f, uint64_t entries, uint64_t n, uint32_t write, uint64_t *out)
{
    uint64_t need = f->present_bit | (write && f->need_rw ? f->rw_bit : 0);
    resolve_entries(f, need, (const uint64_t *)(uintptr_t)entries, n, write, out);
}

/* Byte x of row y of a surface: its graphics address, and *seg, how many bytes of the row from
 * there stay in the same 4 KiB page (a tile is one page; a linear row crosses pages). */
static uint64_t locate(const struct dm_surface *s, uint64_t x, uint64_t y, uint64_t *seg)
{
    uint64_t gma;
    switch (s->tiling) {
    case DM_TILE_X:
    case DM_TILE_Y: {
        uint64_t w = s->tiling == DM_TILE_X ? 512 : 128, h = s->tiling == DM_TILE_X ? 8 : 32;
        uint64_t tiles = s->pitch / w; /* tiles per row of tiles */
        uint64_t tx = x / w;
        if (tx >= tiles) /* past the pitch (a guest's error): kept inside the row of tiles */
            tx = tiles ? tiles - 1 : 0;
        *seg = w - x % w;
        gma = s->base + ((y / h) * tiles + tx) * PAGE_SIZE;
        return gma; /* the tile's page; in_tile() gives the byte in it */
    }
    default:
        gma = s->base + y * s->pitch + x;
        *seg = PAGE_SIZE - (gma & PAGE_MASK);
        return gma;
    }
}

/* Where byte x of row y is inside its tile (tiled) or page (linear, given its address), and how
 * many bytes from there are contiguous. */
static inline uint64_t in_tile(uint32_t tiling, uint64_t x, uint64_t y, uint64_t gma, uint64_t *run)
{
    if (tiling == DM_TILE_X) {
        uint64_t in_x = x % 512;
        *run = 512 - in_x;
        return (y % 8) * 512 + in_x;
    }
    if (tiling == DM_TILE_Y) {
        uint64_t in_x = x % 128;
        *run = 16 - in_x % 16;
        return (in_x / 16) * 512 + (y % 32) * 16 + in_x % 16;
    }
    *run = PAGE_SIZE - (gma & PAGE_MASK);
    return gma & PAGE_MASK;
}

/* The host page holding gma, or NULL (outside the band, or scratch). */
static uint8_t *host_page(const struct dm_surface *s, uint64_t gma)
{
    uint64_t page = (gma - s->page_gma) >> PAGE_SHIFT;
    if (gma < s->page_gma || page >= s->npages || !s->pages[page])
        return NULL;
    return (uint8_t *)(uintptr_t)s->pages[page];
}

/* The host address of byte x of row y, or NULL (scratch, outside the band). */
static uint8_t *byte_at(const struct dm_surface *s, uint64_t x, uint64_t y)
{
    uint64_t seg, run;
    uint64_t g = locate(s, x, y, &seg);
    uint8_t *page = host_page(s, g);
    return page == NULL ? NULL : page + in_tile(s->tiling, x, y, g, &run);
}

/* A linear surface from gma: the host address of that byte (*host) and how many of the n
 * bytes from there lie in host pages that follow one another; 0 when gma's page is outside the
 * band or scratch. One compare per page of the resolved array. */
static uint64_t host_run(const struct dm_surface *s, uint64_t gma, uint64_t n, uint8_t **host)
{
    if (gma < s->page_gma)
        return 0;
    uint64_t p = (gma - s->page_gma) >> PAGE_SHIFT;
    if (p >= s->npages || !s->pages[p])
        return 0;
    uint64_t run = PAGE_SIZE - (gma & PAGE_MASK);
    *host = (uint8_t *)(uintptr_t)s->pages[p] + (gma & PAGE_MASK);
    /* eight pages a test while they follow (a surface in order is one run) */
    while (run + 8 * PAGE_SIZE <= n && p + 8 < s->npages) {
        uint64_t at = s->pages[p], apart = 0;
        for (uint64_t j = 1; j <= 8; j++)
            apart |= s->pages[p + j] ^ (at + j * PAGE_SIZE);
        if (apart)
            break;
        p += 8;
        run += 8 * PAGE_SIZE;
    }
    while (run < n && p + 1 < s->npages && s->pages[p + 1] == s->pages[p] + PAGE_SIZE) {
        p++;
        run += PAGE_SIZE;
    }
    return run < n ? run : n;
}

static inline void put(uint8_t *d, const uint8_t *s, uint64_t n)
{
    if (d == NULL)
        return;
    if (s == NULL)
        memset(d, 0, n);
    else
        memcpy(d, s, n);
}

/* Linear -> Y-tiled, whole tiles: a Y tile's 64-byte line holds one OWord of four rows, so the
 * lines are written whole from four source rows at a time, 32 tiles (one 4 KiB page of each
 * row) in a group; the source is read in order along its rows. Tile by tile instead, the 32
 * rows of a tile (at a pitch of 4 KiB, in the same L1 sets) came in one by one and each line
 * was written in four pieces: 8 MiB took twice a linear copy. */
static void copy_linear_to_y(const struct dm_surface *dst, uint64_t dx, uint64_t dy, const struct dm_surface *src,
                             uint64_t sx, uint64_t sy, uint64_t width, uint64_t rows)
{
    for (uint64_t ty = 0; ty < rows; ty += 32) {
        for (uint64_t tx0 = 0; tx0 < width; tx0 += 32 * 128) {
            uint64_t ntiles = (width - tx0) / 128 < 32 ? (width - tx0) / 128 : 32;
            uint8_t *dt[32];
            for (uint64_t k = 0; k < ntiles; k++) {
                uint64_t seg;
                dt[k] = host_page(dst, locate(dst, dx + tx0 + k * 128, dy + ty, &seg));
            }
            for (uint64_t r0 = 0; r0 < 32; r0 += 4) {
                const uint8_t *row[4];
                int whole = 1;
                for (uint64_t i = 0; i < 4; i++) {
                    uint64_t seg;
                    uint64_t g = locate(src, sx + tx0, sy + ty + r0 + i, &seg);
                    uint8_t *sp = host_page(src, g);
                    row[i] = sp == NULL ? NULL : sp + (g & PAGE_MASK);
                    if (seg < ntiles * 128)
                        whole = 0; /* the group's bytes of this row cross a page */
                }
                for (uint64_t k = 0; k < ntiles; k++) {
                    uint8_t *d = dt[k];
                    if (d == NULL)
                        continue;
                    for (uint64_t c = 0; c < 8; c++) {
                        uint8_t *line = d + c * 512 + r0 * 16;
                        for (uint64_t i = 0; i < 4; i++) {
                            const uint8_t *s = whole ? (row[i] == NULL ? NULL : row[i] + k * 128 + c * 16)
                                                     : byte_at(src, sx + tx0 + k * 128 + c * 16, sy + ty + r0 + i);
                            put(line + i * 16, s, 16);
                        }
                    }
                }
            }
        }
    }
}

/* Whole destination tiles (the band starts and ends on tile boundaries): a tile from a tile of
 * the same layout at the same alignment is one 4 KiB copy; from a linear surface, X tiles take
 * rows of 512 bytes and Y tiles columns of 16-byte OWords, each piece inside one source page
 * (the source offsets are as aligned as the pieces). Returns 0 when the blit is not such. */
static int copy_tiles(const struct dm_surface *dst, uint64_t dx, uint64_t dy, const struct dm_surface *src,
                      uint64_t sx, uint64_t sy, uint64_t width, uint64_t rows)
{
    if (dst->tiling == DM_TILE_LINEAR)
        return 0;
    uint64_t w = dst->tiling == DM_TILE_X ? 512 : 128, h = dst->tiling == DM_TILE_X ? 8 : 32;
    if (dx % w || dy % h || width % w || rows % h || (dx + width) / w > dst->pitch / w)
        return 0;
    int same = src->tiling == dst->tiling && sx % w == 0 && sy % h == 0 && (sx + width) / w <= src->pitch / w;
    int linear = src->tiling == DM_TILE_LINEAR && (dst->tiling == DM_TILE_X ? sx % 512 == 0 && src->pitch % 512 == 0
                                                                              : sx % 16 == 0 && src->pitch % 16 == 0);
    if (!same && !linear)
        return 0;
    if (linear && dst->tiling == DM_TILE_Y) {
        copy_linear_to_y(dst, dx, dy, src, sx, sy, width, rows);
        return 1;
    }
    for (uint64_t ty = 0; ty < rows; ty += h) {
        for (uint64_t tx = 0; tx < width; tx += w) {
            uint64_t seg;
            uint8_t *d = host_page(dst, locate(dst, dx + tx, dy + ty, &seg));
            if (d == NULL)
                continue;
            if (same) {
                put(d, host_page(src, locate(src, sx + tx, sy + ty, &seg)), PAGE_SIZE);
            } else if (dst->tiling == DM_TILE_X) {
                for (uint64_t r = 0; r < 8; r++)
                    put(d + r * 512, byte_at(src, sx + tx, sy + ty + r), 512);
            } else {
                /* Y: a tile row is 8 OWords 512 bytes apart; its 128 source bytes are one
                 * lookup when they lie in one page (else one per OWord) */
                if (tx + w < width) {
                    /* the next tile's 32 source rows asked for ahead, to arrive together: at
                     * a pitch of 4 KiB they share their L1 sets and come from L2 one by one
                     * (8 MiB linear -> Y: 586 -> 465 us, 0.42 -> 0.52x a linear copy) */
                    for (uint64_t r = 0; r < 32; r++) {
                        uint8_t *p = byte_at(src, sx + tx + w, sy + ty + r);
                        if (p != NULL) {
                            __builtin_prefetch(p);
                            __builtin_prefetch(p + 64);
                        }
                    }
                }
                for (uint64_t r = 0; r < 32; r++) {
                    uint64_t seg;
                    uint64_t g = locate(src, sx + tx, sy + ty + r, &seg);
                    if (seg >= 128) {
                        uint8_t *sp = host_page(src, g);
                        if (sp != NULL)
                            sp += g & PAGE_MASK;
                        for (uint64_t c = 0; c < 8; c++)
                            put(d + c * 512 + r * 16, sp == NULL ? NULL : sp + c * 16, 16);
                    } else {
                        for (uint64_t c = 0; c < 8; c++)
                            put(d + c * 512 + r * 16, byte_at(src, sx + tx + c * 16, sy + ty + r), 16);
                    }
                }
            }
        }
    }
    return 1;
}

void dm_blit_copy(const struct dm_surface *dst, uint64_t dx, uint64_t dy, const struct dm_surface *src,
                  uint64_t sx, uint64_t sy, uint64_t width, uint64_t rows)
{
    if (copy_tiles(dst, dx, dy, src, sx, sy, width, rows))
        return;
    int both_linear = dst->tiling == DM_TILE_LINEAR && src->tiling == DM_TILE_LINEAR;
    if (both_linear && dst->pitch == width && src->pitch == width) {
        /* the rows touch on both sides: one row of them all */
        dx += dy * width, sx += sy * width, dy = sy = 0;
        width *= rows, rows = 1;
    }
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t yd = dy + r, ys = sy + r;
        for (uint64_t done = 0; done < width;) {
            /* a chunk inside one page of each surface: one lookup each */
            uint64_t dseg, sseg;
            uint64_t dg = locate(dst, dx + done, yd, &dseg);
            uint64_t sg = locate(src, sx + done, ys, &sseg);
            uint64_t n = width - done;
            if (n > dseg) n = dseg;
            if (n > sseg) n = sseg;
            uint8_t *d = host_page(dst, dg), *s = host_page(src, sg);
            if (both_linear && d != NULL && s != NULL) {
                /* linear on both sides: one copy for as long as the pages follow in the host on
                 * both (a page missing on either side is a piece of its own, below) */
                uint8_t *dp = NULL, *sp = NULL;
                uint64_t dn = host_run(dst, dg, width - done, &dp);
                uint64_t sn = host_run(src, sg, width - done, &sp);
                n = dn < sn ? dn : sn;
                memmove(dp, sp, n);
                done += n;
                continue;
            }
            if (d != NULL) {
                for (uint64_t k = 0; k < n;) {
                    uint64_t drun, srun;
                    uint64_t doff = in_tile(dst->tiling, dx + done + k, yd, dg + k, &drun);
                    uint64_t soff = in_tile(src->tiling, sx + done + k, ys, sg + k, &srun);
                    uint64_t m = n - k;
                    if (m > drun) m = drun;
                    if (m > srun) m = srun;
                    if (m == 16 && s != NULL)
                        memcpy(d + doff, s + soff, 16);
                    else if (s != NULL)
                        memmove(d + doff, s + soff, m);
                    else
                        memset(d + doff, 0, m);
                    k += m;
                }
            }
            done += n;
        }
    }
}

/* n bytes of the repeated colour from byte phase (0-3) of it. */
static void fill_pattern(uint8_t *d, uint64_t n, uint64_t phase, uint32_t color)
{
    uint8_t c[4];
    memcpy(c, &color, 4);
#if defined(__SIZEOF_WCHAR_T__) && __SIZEOF_WCHAR_T__ == 4
    if ((phase & 3) == 0 && ((uintptr_t)d & 3) == 0 && n >= 4) {
        /* whole pixels at a pixel's alignment: libc's wmemset (wchar_t is 4 bytes) stores
         * as wide as memset does, where the loop below stays at what the baseline ISA has */
        uint64_t k = n / 4;
        wmemset((wchar_t *)(void *)d, (wchar_t)color, k);
        d += 4 * k;
        for (uint64_t i = 0; i < (n & 3); i++)
            d[i] = c[i];
        return;
    }
#endif
    while (n && ((uintptr_t)d & 7)) {
        *d++ = c[phase++ & 3];
        n--;
    }
    uint64_t word = 0;
    for (uint64_t i = 0; i < 8; i++)
        word |= (uint64_t)c[(phase + i) & 3] << (8 * i);
    uint64_t *q = (uint64_t *)(void *)d;
    for (uint64_t i = 0; i < n / 8; i++)
        q[i] = word;
    d += n & ~(uint64_t)7;
    for (uint64_t i = 0; i < (n & 7); i++)
        d[i] = c[(phase + i) & 3];
}

void dm_blit_fill(const struct dm_surface *dst, uint64_t dx, uint64_t dy, uint64_t width, uint64_t rows,
                  uint32_t color)
{
    int bytewise = (color & 0xFF) * 0x01010101u == color;
    int linear = dst->tiling == DM_TILE_LINEAR;
    if (linear && dst->pitch == width) {
        /* the rows touch: one row of them all (width is a multiple of 4: the phase holds) */
        dx += dy * width, dy = 0;
        width *= rows, rows = 1;
    }
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t y = dy + r;
        for (uint64_t done = 0; done < width;) {
            uint64_t dseg;
            uint64_t dg = locate(dst, dx + done, y, &dseg);
            uint64_t n = width - done;
            if (n > dseg) n = dseg;
            uint8_t *d = host_page(dst, dg);
            if (linear && d != NULL) {
                /* one fill for as long as the pages follow in the host */
                uint8_t *dp = NULL;
                n = host_run(dst, dg, width - done, &dp);
                if (bytewise)
                    memset(dp, (int)(color & 0xFF), n);
                else
                    fill_pattern(dp, n, done & 3, color);
                done += n;
                continue;
            }
            if (d != NULL) {
                for (uint64_t k = 0; k < n;) {
                    uint64_t drun;
                    uint64_t doff = in_tile(dst->tiling, dx + done + k, y, dg + k, &drun);
                    uint64_t m = n - k;
                    if (m > drun) m = drun;
                    if (bytewise)
                        memset(d + doff, (int)(color & 0xFF), m);
                    else /* byte j of the row is byte j % 4 of the colour */
                        fill_pattern(d + doff, m, (done + k) & 3, color);
                    k += m;
                }
            }
            done += n;
        }
    }
}

/* Rows from y whose bytes on the surface span about `band` at most, or one row (of tiles) when
 * a row alone is more: engine/blit.py's _band_rows, which sizes the step's first band. */
static uint64_t band_rows(const struct dm_surface *s, uint64_t y, uint64_t band)
{
    if (s->tiling == DM_TILE_LINEAR) {
        uint64_t k = band / (s->pitch ? s->pitch : 1);
        return k ? k : 1;
    }
    uint64_t h = s->tiling == DM_TILE_X ? 8 : 32, row = s->pitch * h;
    uint64_t per = band / (row ? row : 1);
    return (h - y % h) + ((per ? per : 1) - 1) * h;
}

/* Whether the graphics addresses rows [y, y + rows) of bytes [x, x + width) touch lie in the
 * surface's resolved pages (engine/tiling.py's rows_span). */
static int band_resolved(const struct dm_surface *s, uint64_t x, uint64_t y, uint64_t width, uint64_t rows)
{
    uint64_t lo, hi;
    if (s->tiling == DM_TILE_LINEAR) {
        lo = s->base + y * s->pitch + x;
        hi = s->base + (y + rows - 1) * s->pitch + x + width;
    } else {
        uint64_t h = s->tiling == DM_TILE_X ? 8 : 32;
        lo = s->base + (y / h) * s->pitch * h;
        hi = s->base + ((y + rows - 1) / h + 1) * s->pitch * h;
    }
    return lo >= s->page_gma && hi <= s->page_gma + (s->npages << PAGE_SHIFT);
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Bands of rows [0, rows) from (dx, dy) and (sx, sy), from the step's start on: how many rows
 * were done until `budget` seconds had passed after a band (*late set), the rows ended, or the
 * next band reached past either surface's resolved pages. */
static uint64_t run_bands(const struct dm_surface *dst, uint64_t dx, uint64_t dy, const struct dm_surface *src,
                          uint64_t sx, uint64_t sy, uint64_t width, uint64_t rows, uint32_t color, uint64_t band,
                          double start, double budget, int *late)
{
    uint64_t done = 0;
    while (done < rows) {
        uint64_t k = band_rows(dst, dy + done, band);
        if (src != NULL) {
            uint64_t ks = band_rows(src, sy + done, band);
            k = ks < k ? ks : k;
        }
        if (k > rows - done)
            k = rows - done;
        if (!band_resolved(dst, dx, dy + done, width, k) ||
            (src != NULL && !band_resolved(src, sx, sy + done, width, k)))
            break;
        if (src != NULL)
            dm_blit_copy(dst, dx, dy + done, src, sx, sy + done, width, k);
        else
            dm_blit_fill(dst, dx, dy + done, width, k, color);
        done += k;
        if (start >= 0 && seconds() - start >= budget) {
            *late = 1;
            break;
        }
    }
    return done;
}

/* Where a step's graphics addresses go: the space (DM_SPACE_*) and its roots. */
struct space {
    uint32_t kind;
    uint64_t roots[4];
};

/* The page of a device frame, or NULL: not a device frame (a table is nothing else). */
static const uint64_t *device_page(const struct dm_device_pages *d, uint64_t hfn)
{
    return (const uint64_t *)(uintptr_t)dm_device_page(d, hfn);
}

/* The shadow PT mapping gma's 2 MiB (the walker's leaf_table), or NULL: a directory on the
 * way that is no device page. */
static const uint64_t *shadow_pt(const struct dm_blit_env *env, const struct space *sp, uint64_t gma)
{
    const struct dm_device_pages *d = env->device;
    uint64_t mask = env->frames.frame_mask;
    const uint64_t *t;
    if (sp->kind == DM_SPACE_PPGTT_L4) {
        t = device_page(d, sp->roots[0] >> PAGE_SHIFT);
        for (int shift = 39; t != NULL && shift > 21; shift -= 9)
            t = device_page(d, (t[(gma >> shift) & 511] & mask) >> PAGE_SHIFT);
    } else {
        t = device_page(d, sp->roots[(gma >> 30) & 3] >> PAGE_SHIFT);
    }
    return t == NULL ? NULL : device_page(d, (t[(gma >> 21) & 511] & mask) >> PAGE_SHIFT);
}

/* out[0:n]: the host pages of graphics pages [first, first + n) of the job's space for the
 * access (0: scratch, absent, not permitted, past the space's end). */
static void resolve_space(const struct dm_blit_env *env, const struct space *sp, uint64_t first, uint64_t n,
                          uint32_t write, uint64_t *out)
{
    const struct dm_frames *f = &env->frames;
    int ggtt = sp->kind == DM_SPACE_GGTT;
    uint64_t need = f->present_bit | (write && !ggtt ? f->rw_bit : 0);
    uint64_t limit = sp->kind == DM_SPACE_PPGTT_L4 ? (uint64_t)1 << 36 : (uint64_t)1 << 20; /* pages */
    uint64_t inside = first >= limit ? 0 : (limit - first < n ? limit - first : n);
    if (ggtt && inside) {
        resolve_entries(f, need, (const uint64_t *)(uintptr_t)sp->roots[0] + first, inside, write, out);
    } else {
        for (uint64_t done = 0; done < inside;) {
            uint64_t page = first + done, take = 512 - (page & 511);
            if (take > inside - done)
                take = inside - done;
            const uint64_t *pt = shadow_pt(env, sp, page << PAGE_SHIFT);
            if (pt != NULL)
                resolve_entries(f, need, pt + (page & 511), take, write, out + done);
            else
                memset(out + done, 0, take * sizeof(*out));
            done += take;
        }
    }
    if (inside < n)
        memset(out + inside, 0, (n - inside) * sizeof(*out));
}

/* Resolve the pages of a surface's rows [y, y + rows) of bytes [x, x + width) (the first band),
 * and of its `left` rows from y as far as max_pages allows; 0 when the band alone needs more. */
static int resolve_surface(const struct dm_blit_env *env, const struct space *sp, struct dm_surface *s, uint64_t *pages,
                           uint64_t x, uint64_t y, uint64_t width, uint64_t rows, uint64_t left, uint32_t write)
{
    uint64_t lo, hi, ahead;
    if (s->tiling == DM_TILE_LINEAR) {
        lo = s->base + y * s->pitch + x;
        hi = s->base + (y + rows - 1) * s->pitch + x + width;
        ahead = s->base + (y + left - 1) * s->pitch + x + width;
    } else {
        uint64_t h = s->tiling == DM_TILE_X ? 8 : 32;
        lo = s->base + (y / h) * s->pitch * h;
        hi = s->base + ((y + rows - 1) / h + 1) * s->pitch * h;
        ahead = s->base + ((y + left - 1) / h + 1) * s->pitch * h;
    }
    uint64_t first = lo >> PAGE_SHIFT, end = (hi + PAGE_MASK) >> PAGE_SHIFT, last = (ahead + PAGE_MASK) >> PAGE_SHIFT;
    if (end - first > env->max_pages)
        return 0;
    uint64_t n = end - first;
    if (last > end)
        n = last - first < env->max_pages ? last - first : env->max_pages;
    resolve_space(env, sp, first, n, write, pages);
    s->page_gma = first << PAGE_SHIFT;
    s->npages = n;
    return 1;
}

uint64_t dm_blit_step(const struct dm_blit_env *env, uint64_t root0, uint64_t root1, uint64_t root2, uint64_t root3,
                      uint32_t space, uint32_t copy, uint64_t dst_base, uint64_t dst_pitch, uint32_t dst_tiling,
                      uint64_t dx, uint64_t dy, uint64_t src_base, uint64_t src_pitch, uint32_t src_tiling,
                      uint64_t sx, uint64_t sy, uint64_t width, uint64_t rows, uint64_t band, uint32_t color,
                      uint64_t row, double budget)
{
    double start = isinf(budget) && budget > 0 ? -1 : seconds(); /* -1: no deadline */
    const struct space sp = {space, {root0, root1, root2, root3}};
    struct dm_surface dst = {env->dst_pages, 0, 0, dst_base, dst_pitch, dst_tiling, 0};
    struct dm_surface src = {env->src_pages, 0, 0, src_base, src_pitch, src_tiling, 0};
    const struct dm_surface *s = copy ? &src : NULL;
    if (band == 0)
        band = 1;
    if (width == 0 || row > rows)
        row = rows;
    int late = 0;
    while (row < rows && !late) {
        uint64_t left = rows - row, y = dy + row, ys = sy + row;
        uint64_t k = band_rows(&dst, y, band);
        if (s != NULL) {
            uint64_t ks = band_rows(&src, ys, band);
            k = ks < k ? ks : k;
        }
        if (k > left)
            k = left;
        if (!resolve_surface(env, &sp, &dst, env->dst_pages, dx, y, width, k, left, 1) ||
            (s != NULL && !resolve_surface(env, &sp, &src, env->src_pages, sx, ys, width, k, left, 0)))
            return UINT64_MAX;
        uint64_t done = run_bands(&dst, dx, y, s, sx, ys, width, left, color, band, start, budget, &late);
        if (done == 0) /* cannot be: the first band's pages were just resolved */
            return UINT64_MAX;
        row += done;
    }
    return row;
}
