/* The shadow PPGTT's compiled helpers (see dm_ppgtt.h): what plugins/gen_vgpu/gtt/shadow.py
 * does per entry on its Python path, per table here. Little-endian hosts only, as the rest of
 * the accelerator. */
#include <string.h>

#include "dm_clones.h"
#include "dm_ppgtt.h"

#define LANES 512
#define IPS_GROUP 16
#define TABLE_BYTES (LANES * 8)

/* The usable-or-not window holding gfn, or NULL; *hint is the last one found. */
static const struct dm_pt_window *find_window(const struct dm_pt_ops *o, uint64_t gfn, uint32_t *hint)
{
    const struct dm_pt_window *w = o->windows;
    if (*hint < o->nwindows && w[*hint].first_gfn <= gfn && gfn < w[*hint].end_gfn)
        return &w[*hint];
    uint32_t lo = 0, hi = o->nwindows;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (w[mid].end_gfn <= gfn)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < o->nwindows && w[lo].first_gfn <= gfn) {
        *hint = lo;
        return &w[lo];
    }
    return NULL;
}

static void note_used(uint32_t index, uint32_t *used, uint32_t *nused, uint64_t *seen)
{
    /* windows past the bitmap's 512 are noted every time they are met (the caller dedups) */
    if (index < LANES) {
        uint64_t bit = (uint64_t)1 << (index & 63);
        if (seen[index >> 6] & bit)
            return;
        seen[index >> 6] |= bit;
    }
    if (*nused < LANES)
        used[(*nused)++] = index;
}

#define PTR(a) ((void *)(uintptr_t)(a))

/* The common leaf: 4 KiB entries whose present frames all lie in the window of the first one,
 * usable. Each guest entry is read once, copied to the snapshot and translated from that value
 * (the two cannot disagree however the guest writes meanwhile); branch-free per entry (a
 * present frame outside the window only sets a flag), so the loop runs at about a nanosecond
 * an entry where the general one below takes three, and no separate copy pass is made. Returns
 * 0 when the table is not of that kind: the general path then copies and rewrites every
 * entry again. */
DM_VECTOR_CLONES
static int leaf_in_one_window(const struct dm_pt_ops *o, const volatile uint64_t *guest, uint64_t *snap,
                              uint64_t *shadow, uint32_t *used, uint32_t *nused)
{
    const uint64_t frames = o->addr_mask, present = o->present_bit, scratch = o->scratch_entry;
    uint32_t i = 0, hint = 0;
    uint64_t e0 = 0;
    while (i < LANES && !((e0 = guest[i]) & present))
        i++;
    const struct dm_pt_window *w = i == LANES ? NULL : find_window(o, (e0 & frames) >> 12, &hint);
    if (i < LANES && (w == NULL || !w->usable))
        return 0;
    /* No present entry seen: an empty window, every entry read below must then be non-present. */
    const uint64_t first = w ? w->first_gfn : 0, span = w ? w->end_gfn - w->first_gfn : 0;
    const uint64_t delta = w ? (w->hfn_base - first) << 12 : 0;
    const uint64_t keep = w == NULL || w->writable ? ~(uint64_t)0 : ~o->rw_bit;
    uint64_t outside = 0;
    const uint64_t *g = (const uint64_t *)guest; /* read once each below: one plain load */
    for (uint32_t k = 0; k < LANES; k++) {
        uint64_t e = g[k];
        snap[k] = e;
        uint64_t m = (e & present) ? ~(uint64_t)0 : 0;
        uint64_t in = (((e & frames) >> 12) - first < span) ? ~(uint64_t)0 : 0;
        outside |= m & ~in;
        uint64_t mapped = ((e & ~frames) | (((e & frames) + delta) & frames)) & keep;
        shadow[k] = (mapped & m) | (scratch & ~m);
    }
    if (outside)
        return 0; /* the general path copies and rewrites every entry */
    *nused = 0;
    if (w != NULL)
        used[(*nused)++] = (uint32_t)(w - o->windows);
    return 1;
}

uint32_t dm_pt_same(uint64_t a, uint64_t b) { return memcmp(PTR(a), PTR(b), TABLE_BYTES) == 0; }

uint32_t dm_pt_sync_leaf(const struct dm_pt_ops *o, uint64_t guest_addr, uint64_t snap_addr, uint64_t shadow_addr,
                         uint32_t ips, uint32_t valid, uint32_t *used, uint32_t *nused)
{
    uint64_t *snap = PTR(snap_addr), *shadow = PTR(shadow_addr);
    uint64_t seen[LANES / 64] = {0};
    uint32_t hint = 0, result = 0;
    const uint64_t frames = o->addr_mask, present = o->present_bit, scratch = o->scratch_entry;
    /* the window of the last frame: [first, end) in frame numbers, and what moves a frame there */
    uint64_t first = 0, end = 0, delta = 0, keep = 0; /* empty: every frame misses */
    *nused = 0;
    if (valid && memcmp(PTR(guest_addr), snap, TABLE_BYTES) == 0)
        return DM_PT_SAME;
    if (!ips && leaf_in_one_window(o, PTR(guest_addr), snap, shadow, used, nused))
        return 0;
    memcpy(snap, PTR(guest_addr), TABLE_BYTES);
    uint32_t step = ips ? IPS_GROUP : 1;
    for (uint32_t i = 0; i < LANES; i += step) {
        uint64_t e = snap[i];
        if (!(e & present)) {
            for (uint32_t j = 0; j < step; j++)
                shadow[i + j] = scratch;
            continue;
        }
        uint64_t gfn0 = ips ? (e & o->addr_mask_64k) >> 12 : (e & frames) >> 12;
        uint64_t flags = e & ~frames;
        for (uint32_t j = 0; j < step; j++) {
            uint64_t gfn = gfn0 + j;
            if (gfn - first >= end - first) {
                const struct dm_pt_window *w = find_window(o, gfn, &hint);
                if (w == NULL || !w->usable) {
                    result |= w == NULL ? DM_PT_UNBACKED : DM_PT_UNBACKED | DM_PT_UNUSABLE;
                    shadow[i + j] = scratch;
                    first = 0, end = 0;
                    continue;
                }
                note_used((uint32_t)(w - o->windows), used, nused, seen);
                first = w->first_gfn;
                end = w->end_gfn;
                delta = (w->hfn_base - first) << 12;
                keep = w->writable ? ~(uint64_t)0 : ~o->rw_bit;
            }
            shadow[i + j] = (flags | (((gfn << 12) + delta) & frames)) & keep;
        }
    }
    return result;
}

void dm_pt_sync_leaves(const struct dm_pt_ops *o, uint64_t n, const uint64_t *guest, const uint64_t *snap,
                       const uint64_t *shadow, const uint8_t *flags, uint32_t *result, int32_t *window)
{
    uint32_t used[LANES], nused;
    for (uint64_t i = 0; i < n; i++) {
        result[i] = dm_pt_sync_leaf(o, guest[i], snap[i], shadow[i], flags[i] & 1, (flags[i] >> 1) & 1, used, &nused);
        window[i] = nused == 0 ? -1 : nused == 1 ? (int32_t)used[0] : -2;
    }
}

uint32_t dm_pt_pde_frames(const struct dm_pt_ops *o, uint64_t large, uint64_t n, const uint64_t *pde, uint64_t *gfn)
{
    uint64_t odd = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t e = pde[i];
        odd |= (e & (o->present_bit | large)) ^ o->present_bit;
        gfn[i] = (e & o->addr_mask) >> 12;
    }
    return odd == 0;
}

uint64_t dm_device_page(const struct dm_device_pages *d, uint64_t hfn)
{
    uint64_t k = hfn - d->base_hfn;
    if (hfn < d->base_hfn || (k >> 6) >= d->nslabs)
        return 0;
    return d->slabs[k >> 6] + ((k & 63) << 12);
}

void dm_pt_first_pts(const struct dm_pt_ops *o, const struct dm_device_pages *dev, uint64_t n, const uint64_t *pde,
                     const uint64_t *hfn, uint64_t guest_origin, const uint64_t *snap, uint64_t *pd, uint64_t *shadow,
                     uint32_t *result, int32_t *window)
{
    uint32_t used[LANES], nused;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t e = pde[i];
        pd[i] = (e & ~o->addr_mask) | (hfn[i] << 12);
        shadow[i] = dm_device_page(dev, hfn[i]); /* the caller took the pages: never 0 */
        uint64_t guest = guest_origin + (((e & o->addr_mask) >> 12) << 12);
        result[i] = dm_pt_sync_leaf(o, guest, snap[i], shadow[i], 0, 0, used, &nused);
        window[i] = nused == 0 ? -1 : nused == 1 ? (int32_t)used[0] : -2;
    }
}

uint32_t dm_pt_present(const char *table, uint64_t present, uint16_t *out)
{
    uint64_t t[LANES];
    uint32_t n = 0;
    memcpy(t, table, TABLE_BYTES);
    for (uint32_t i = 0; i < LANES; i++)
        if (t[i] & present)
            out[n++] = (uint16_t)i;
    return n;
}

uint32_t dm_pt_diff(uint64_t old_addr, const char *now_bytes, uint16_t *out)
{
    uint64_t a[LANES], b[LANES];
    uint32_t n = 0;
    memcpy(a, PTR(old_addr), TABLE_BYTES);
    memcpy(b, now_bytes, TABLE_BYTES);
    for (uint32_t i = 0; i < LANES; i++)
        if (a[i] != b[i])
            out[n++] = (uint16_t)i;
    return n;
}

uint64_t dm_pt_first_changed(const uint64_t *guest, const uint64_t *snap, uint64_t start, uint64_t n)
{
    for (uint64_t i = start; i < n; i++)
        if (memcmp(PTR(guest[i]), PTR(snap[i]), TABLE_BYTES) != 0)
            return i;
    return n;
}
