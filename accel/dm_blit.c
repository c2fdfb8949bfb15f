/* The blitter's compiled helpers (see dm_blit.h): what plugins/gen_vgpu/engine/blit.py does
 * with memoryviews, with memcpy and memset over host addresses the caller resolved. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include <math.h>
#include <string.h>
#include <time.h>
#include <wchar.h>

#include "dm_blit.h"

#define PAGE_SHIFT 12
#define PAGE_SIZE ((uint64_t)1 << PAGE_SHIFT)
#define PAGE_MASK (PAGE_SIZE - 1)

void dm_frames_resolve(const struct dm_frames *f, uint64_t entries_addr, uint64_t n, uint32_t write, uint64_t *out)
{
    const uint64_t *entries = (const uint64_t *)(uintptr_t)entries_addr;
    /* in locals: out could alias *f as far as the compiler knows, which would reload them
     * after every store */
    uint64_t need = f->present_bit | (write && f->need_rw ? f->rw_bit : 0), mask = f->frame_mask;
    /* The window of the last frame looked up, as [lo, hi) and the address of lo's frame (0:
     * the access is not permitted there): consecutive entries mostly share one. */
    uint64_t lo = 1, hi = 0, addr = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t e = entries[i];
        if ((e & need) != need) {
            out[i] = 0;
            continue;
        }
        uint64_t hfn = (e & mask) >> PAGE_SHIFT;
        if (hfn < lo || hfn >= hi) {
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
                lo = hfn, hi = hfn + 1, addr = 0; /* in no window */
            } else {
                lo = w->hfn_base, hi = w->hfn_end;
                addr = w->addr && (write ? w->writable : w->readable) ? w->addr : 0;
            }
        }
        out[i] = addr ? addr + ((hfn - lo) << PAGE_SHIFT) : 0;
    }
}

void dm_frames_resolve_tables(const struct dm_frames *f, const uint64_t *tables, uint64_t first, uint64_t n,
                              uint32_t write, uint64_t *out)
{
    for (uint64_t k = 0, done = 0; done < n; k++) {
        uint64_t take = 512 - first;
        if (take > n - done)
            take = n - done;
        if (tables[k])
            dm_frames_resolve(f, tables[k] + 8 * first, take, write, out + done);
        else
            memset(out + done, 0, take * sizeof(*out));
        done += take;
        first = 0;
    }
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

uint64_t dm_blit_bands(const struct dm_surface *dst, uint64_t dx, uint64_t dy, const struct dm_surface *src,
                       uint64_t sx, uint64_t sy, uint64_t width, uint64_t rows, uint32_t color, uint64_t band,
                       double budget)
{
    int unbounded = isinf(budget) && budget > 0;
    double start = unbounded ? 0 : seconds();
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
        if (!unbounded && seconds() - start >= budget)
            break;
    }
    return done;
}
