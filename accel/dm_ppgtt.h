/* The shadow PPGTT's and the blitter's compiled helpers: whole 4 KiB tables and whole runs of
 * pixels per call (plugins/gen_vgpu/gtt/shadow_accel.py, plugins/gen_vgpu/engine/blit.py).
 *
 * accel/build_cffi.py hands this file to cffi's cdef after dm_accel.h. The entry encoding (present,
 * writable bits, frame masks) comes from Python's PteOps at run time; the C holds none of its own.
 * The functions are found by name: devmodel/accel.py's ABI version covers dm_accel.h alone, and
 * a module without them leaves the shadow PPGTT and the blitter on Python.
 */
#ifndef DM_PPGTT_H
#define DM_PPGTT_H
#include <stdint.h>

/* One DMA window as a leaf translation sees it; the table is ordered by first_gfn. */
struct dm_pt_window {
    uint64_t first_gfn;
    uint64_t end_gfn;
    uint64_t hfn_base;
    uint32_t usable;     /* it has an fd and the device may read it: frames may be mapped */
    uint32_t writable;   /* the device may write it: else the shadow entry loses its RW bit */
};

struct dm_pt_ops {
    uint64_t present_bit;
    uint64_t rw_bit;
    uint64_t addr_mask;      /* a 4 KiB entry's frame bits */
    uint64_t addr_mask_64k;  /* a 64 KiB entry's */
    uint64_t scratch_entry;  /* what a leaf entry without a usable frame becomes */
    const struct dm_pt_window *windows;
    uint32_t nwindows;
    uint32_t reserved;
};

/* The device's own pages (the shadow tables), in slabs of 64 the DMA map never gives back:
 * device frame base_hfn + k's page is at slabs[k / 64] + (k % 64) * 4096, for k / 64 < nslabs
 * (plugins/gen_vgpu/gtt/device_pages.py keeps the table). */
struct dm_device_pages {
    const uint64_t *slabs;
    uint64_t nslabs;
    uint64_t base_hfn;
};

/* The address of device frame hfn's page, or 0 when hfn is no device frame the table knows. */
uint64_t dm_device_page(const struct dm_device_pages *d, uint64_t hfn);

/* What dm_pt_leaf reports, ORed. */
#define DM_PT_UNBACKED 1  /* a present entry's frame is in no usable window (left at scratch) */
#define DM_PT_UNUSABLE 2  /* ... of which one lies in a window without an fd or read permission */

#define DM_PT_SAME 0x100  /* dm_pt_sync_leaf: the guest table equals the valid snapshot; nothing done */

/* Bring the shadow of one guest PT (512 entries; with ips, every 16th is a 64 KiB page) up to
 * date. Addresses: guest, the guest table in a mapped window; snap, its snapshot; shadow, the
 * shadow table (4 KiB each). With valid set and the guest table equal to the snapshot, returns
 * DM_PT_SAME; otherwise copies the guest table into the snapshot first and translates the copy
 * (a guest writing meanwhile cannot make the two disagree): every present frame moved into
 * its window's host frames, every other entry the scratch entry. The indexes of the windows
 * used go to used[] (room for 512), their number to *nused. */
uint32_t dm_pt_sync_leaf(const struct dm_pt_ops *o, uint64_t guest, uint64_t snap, uint64_t shadow,
                         uint32_t ips, uint32_t valid, uint32_t *used, uint32_t *nused);

/* dm_pt_sync_leaf for n tables at once. flags[i]: bit 0 ips, bit 1 valid (as above). Out:
 * result[i], what dm_pt_sync_leaf returned; window[i], the index of the one window whose frames
 * the shadow holds, -1 for none, -2 for several (dm_pt_sync_leaf lists them). */
void dm_pt_sync_leaves(const struct dm_pt_ops *o, uint64_t n, const uint64_t *guest, const uint64_t *snap,
                       const uint64_t *shadow, const uint8_t *flags, uint32_t *result, int32_t *window);

/* The frames of n PD entries to gfn[]: 1 when each is present without any of the bits in large
 * (a 2 MiB or 64 KiB page), that is, names a PT of 4 KiB pages; else 0. */
uint32_t dm_pt_pde_frames(const struct dm_pt_ops *o, uint64_t large, uint64_t n, const uint64_t *pde, uint64_t *gfn);

/* A new PD's entries naming new PTs (dm_pt_pde_frames said so): for each i, the shadow entry
 * naming the PT's shadow table (device frame hfn[i], known to dev) to pd[i], the table's address
 * to shadow[i], and the PT synced as by dm_pt_sync_leaves without a valid snapshot, its guest
 * table at guest_origin + (gfn << 12) (the caller checked that every one lies in one readable
 * window). result[] and window[] as dm_pt_sync_leaves. */
void dm_pt_first_pts(const struct dm_pt_ops *o, const struct dm_device_pages *dev, uint64_t n, const uint64_t *pde,
                     const uint64_t *hfn, uint64_t guest_origin, const uint64_t *snap, uint64_t *pd, uint64_t *shadow,
                     uint32_t *result, int32_t *window);

/* The indexes of a 512-entry table's entries with the present bit to out[], their number returned. */
uint32_t dm_pt_present(const char *table, uint64_t present, uint16_t *out);

/* The entries of two 512-entry tables that differ: their indexes to out[], their number returned. */
uint32_t dm_pt_diff(uint64_t old, const char *now, uint16_t *out);

/* Whether the two 4 KiB pages at these addresses are equal. */
uint32_t dm_pt_same(uint64_t a, uint64_t b);

/* Tables [start, n) as addresses of a guest table and of its snapshot, 4 KiB each: the first i
 * whose two pages differ, or n. */
uint64_t dm_pt_first_changed(const uint64_t *guest, const uint64_t *snap, uint64_t start, uint64_t n);

/* --- the blitter --------------------------------------------------------------------------- */

/* A surface's rows as the engine resolved them: row r starts at byte offset row_off[r] of the
 * host buffer base (or is dropped / reads zeros when row_off[r] is UINT64_MAX). */

#endif
