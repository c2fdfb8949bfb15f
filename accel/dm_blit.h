/* The blitter's compiled helpers (plugins/gen_vgpu/engine/blit_accel.py): graphics pages
 * resolved to host addresses a page table at a time, and XY_COLOR_BLT / XY_SRC_COPY_BLT
 * rectangles over linear, X- and Y-tiled surfaces a band of rows at a time.
 *
 * accel/build_cffi.py hands this file to cffi's cdef with the other headers. Found by name, as
 * dm_ppgtt.h's functions: a module without them leaves the blitter on Python.
 */
#ifndef DM_BLIT_H
#define DM_BLIT_H
#include <stdint.h>
#include "dm_ppgtt.h" /* struct dm_device_pages */

/* One DMA window as an engine reaches its frames; the table is ordered by hfn_base. */
struct dm_frame_window {
    uint64_t hfn_base;
    uint64_t hfn_end;
    uint64_t addr;       /* where its first frame is mapped in this process; 0: no fd */
    uint32_t readable;
    uint32_t writable;
};

struct dm_frames {
    const struct dm_frame_window *windows;
    uint32_t nwindows;
    uint32_t need_rw;     /* writes need the entry's RW bit (a PPGTT leaf), or not (the GGTT) */
    uint64_t present_bit;
    uint64_t rw_bit;
    uint64_t frame_mask;  /* an entry's frame bits */
};

/* out[i]: the host address of the page entries[i] maps, for reading (write 0) or writing, or
 * 0 when it is not present, not in a window, or the access is not permitted (scratch: reads
 * give zeros, writes are dropped). */
void dm_frames_resolve(const struct dm_frames *f, uint64_t entries, uint64_t n, uint32_t write, uint64_t *out);

#define DM_TILE_LINEAR 0
#define DM_TILE_X 1  /* 4 KiB tiles of 8 rows of 512 bytes */
#define DM_TILE_Y 2  /* 4 KiB tiles of 32 rows of 128 bytes, in 16-byte columns top to bottom */

/* A surface as a band of it was resolved: the host address of every 4 KiB graphics page from
 * page_gma (0: scratch), the surface's address and pitch in bytes, its tiling. A byte whose
 * page lies outside the band reads as zero and is not written. */
struct dm_surface {
    const uint64_t *pages;
    uint64_t page_gma;
    uint64_t npages;
    uint64_t base;
    uint64_t pitch;
    uint32_t tiling;
    uint32_t reserved;
};

/* Copy rows [0, rows) of width bytes from (sx, sy) of src to (dx, dy) of dst (x in bytes), row
 * after row, each row left to right in the largest pieces both layouts keep contiguous. */
void dm_blit_copy(const struct dm_surface *dst, uint64_t dx, uint64_t dy, const struct dm_surface *src,
                  uint64_t sx, uint64_t sy, uint64_t width, uint64_t rows);

/* Fill rows [0, rows) of width bytes from (dx, dy) of dst with the 32-bit colour; byte j of a
 * row is byte j % 4 of the colour (width and dx are multiples of 4 in every blit decoded). */
void dm_blit_fill(const struct dm_surface *dst, uint64_t dx, uint64_t dy, uint64_t width, uint64_t rows,
                  uint32_t color);

/* What a blit step reads besides its job: the DMA windows and the entries' bits (need_rw is
 * not read: the job's space says whether writes need the RW bit), the device's pages, and two
 * arrays of max_pages entries for the host pages of each surface's resolved graphics pages. */
struct dm_blit_env {
    struct dm_frames frames;
    const struct dm_device_pages *device; /* dm_ppgtt.h: the shadow tables, scratch among them */
    uint64_t *dst_pages;
    uint64_t *src_pages;
    uint64_t max_pages;
};

#define DM_SPACE_GGTT 0      /* root0: the address of the shadow GGTT's 2^20 entries */
#define DM_SPACE_PPGTT_L3 1  /* root0-3: the shadow PDs of the four GiB (host addresses) */
#define DM_SPACE_PPGTT_L4 2  /* root0: the shadow PML4 (host address) */

/* A step of a blit over linear, X- or Y-tiled surfaces (tiling: DM_TILE_*; x in bytes) in the
 * space (DM_SPACE_*, its roots): rows [row, rows) of width bytes from (dx, dy) of the
 * destination copied from (sx, sy) of the source (copy 1) or filled with the colour (copy 0),
 * in bands of at most `band` bytes of each surface (or one row of tiles). Its surfaces' pages
 * from `row` on are resolved to host pages, up to max_pages of each ahead: the walk from the
 * roots reads device pages only (a directory entry naming no device page is scratch, as is
 * every page past the space's end) and the leaf entries resolve as dm_frames_resolve does.
 * Then bands, each as dm_blit_copy or dm_blit_fill does it, until `budget` seconds of
 * CLOCK_MONOTONIC have passed after a band or the rows end; where the bands reach past the
 * pages resolved, the pages from there are resolved again (nothing changes the tables or the
 * windows inside a step). Returns the row reached, or UINT64_MAX (nothing done) when one band
 * of a surface spans more than max_pages pages. The job's fields are arguments, not a struct:
 * a blit that ends in one step is one call and no allocation. */
uint64_t dm_blit_step(const struct dm_blit_env *env, uint64_t root0, uint64_t root1, uint64_t root2, uint64_t root3,
                      uint32_t space, uint32_t copy, uint64_t dst_base, uint64_t dst_pitch, uint32_t dst_tiling,
                      uint64_t dx, uint64_t dy, uint64_t src_base, uint64_t src_pitch, uint32_t src_tiling,
                      uint64_t sx, uint64_t sy, uint64_t width, uint64_t rows, uint64_t band, uint32_t color,
                      uint64_t row, double budget);

#endif
