"""The display's rows (contract §6) and its register offsets and fields, named as in i915.
Per-pipe and per-transcoder registers step by 0x1000, per-port ones by 0x100, as the helpers
say.

Everything i915 programs and reads back is plain storage (its state checker compares every
field it wrote); the rows are the few registers that are live: straps and fuses, lock and idle
bits that follow their enables, the AUX channels, the pipes' frame clock and the arming plane
registers. Every row exists only with the display (``display=True``); the headless values of
FUSE_STRAP, SKL_DFSM and LCPLL_CTL are gt.py's rows. The behaviour is the display's
(``display/display.py``), which supplies the handlers named here.
"""

from __future__ import annotations

from ..platform import Platform
from .gt import FUSE_STRAP, LCPLL_CTL, LCPLL_PLL_LOCK, SKL_DFSM
from .irq import DISPLAY_BANKS
from .row import BDW, RO, SKL, Row

# --- presence, straps, clocks (§6.2.1) -----------------------------------------------------
# FUSE_STRAP (BDW) and SKL_DFSM (SKL): 0 = display present.
SFUSE_STRAP = 0xC2014
SFUSE_STRAP_DDIB_DETECTED = 1 << 2
SFUSE_STRAP_DDID_DETECTED = 1 << 0
CPU_VGACNTRL = 0x41000
VGA_DISP_DISABLE = 1 << 31
PCH_RAWCLK_FREQ = 0xC6204
RAWCLK_MHZ = {Platform.BDW: 125, Platform.SKL: 24}

# --- power wells, DBUF, DC (§6.3) ----------------------------------------------------------
DBUF_CTL = 0x45008
DBUF_POWER_REQUEST = 1 << 31
DBUF_POWER_STATE = 1 << 30
D_COMP_BDW = 0x138144
D_COMP_RCOMP_IN_PROGRESS = 1 << 9

# --- CDCLK and PLLs (§6.4) -----------------------------------------------------------------
# LCPLL_CTL (BDW) and its DISABLE, LOCK, CD_SOURCE_FCLK bits are gt.py's.
LCPLL_CD_SOURCE_FCLK_DONE = 1 << 19
PORT_CLK_SEL_BASE = 0x46100  # BDW, + 4 * port
PORT_CLK_SEL_NONE = 7 << 29
PORT_CLK_SEL_SHIFT = 29
BDW_PORT_CLOCK_KHZ = {0: 540000, 1: 270000, 2: 162000}  # LCPLL 2700 / 1350 / 810
SKL_DPLL_ENABLE = (0x46010, 0x46014, 0x46040, 0x46060)  # DPLL0..3: LCPLL1/2_CTL, WRPLL_CTL1/2
SKL_PLL_ENABLE = 1 << 31
SKL_PLL_LOCK = 1 << 30
DPLL_STATUS = 0x6C060  # SKL, bit 8 * id: DPLL id locked
DPLL_CTRL1 = 0x6C058
DPLL_CTRL2 = 0x6C05C
DPLL_CTRL2_POWER_ON = 0x1F << 15  # every DDI clock gated
SKL_LINK_RATE_KHZ = {0: 540000, 1: 270000, 2: 162000, 3: 324000, 4: 216000, 5: 432000}
SBI_CTL_STAT = 0xC6008  # BDW (LPT)
SBI_BUSY = 1 << 0
SBI_RESPONSE_MASK = 3 << 1

# --- DDI and DP link (§6.5) ----------------------------------------------------------------
DDI_BUF_CTL_BASE = 0x64000  # + 0x100 * port
DDI_BUF_CTL_ENABLE = 1 << 31
DDI_BUF_IS_IDLE = 1 << 7
DP_TP_CTL_BASE = 0x64040
DP_TP_CTL_ENABLE = 1 << 31
DP_TP_CTL_FORCE_ACT = 1 << 25
DP_TP_CTL_LINK_TRAIN_MASK = 7 << 8
DP_TP_CTL_LINK_TRAIN_IDLE = 2 << 8
DP_TP_STATUS_BASE = 0x64044
DP_TP_STATUS_IDLE_DONE = 1 << 25
DP_TP_STATUS_ACT_SENT = 1 << 24
PORTS = 5  # A..E

# --- transcoders and pipes (§6.10) ---------------------------------------------------------
PIPES = 3
PIPE_STRIDE = 0x1000
HTOTAL = 0x60000
VTOTAL = 0x6000C
VBLANK = 0x60010
TRANS_DDI_FUNC_CTL = 0x60400
TRANS_DDI_FUNC_ENABLE = 1 << 31
TRANS_DDI_PORT_SHIFT = 28
LINK_M1 = 0x60040
LINK_N1 = 0x60044
PIPE_CRC_CTL = 0x60050  # per transcoder; i915's debugfs crtc-N/crc/control writes it
PIPE_CRC_ENABLE = 1 << 31
PIPE_CRC_SOURCE_SHIFT_IVB = 29  # BDW: 30:29
PIPE_CRC_SOURCE_MASK_IVB = 3 << PIPE_CRC_SOURCE_SHIFT_IVB
PIPE_CRC_SOURCE_PRIMARY_IVB = 0
PIPE_CRC_SOURCE_SPRITE_IVB = 1
PIPE_CRC_SOURCE_PF_IVB = 2  # the pipe: i915's "pipe" and "auto"
PIPE_CRC_SOURCE_SHIFT_SKL = 28  # SKL: 30:28
PIPE_CRC_SOURCE_MASK_SKL = 7 << PIPE_CRC_SOURCE_SHIFT_SKL
PIPE_CRC_SOURCE_DMUX_SKL = 4  # the pipe; planes 1-7 are 0, 2, 6, 7, 5, 3, 1
PIPE_CRC_RES_1 = 0x60064  # PIPE_CRC_RES_1_IVB: the only result i915 reads on gen8+
PIPEDSL = 0x70000
TRANSCONF = 0x70008
TRANSCONF_ENABLE = 1 << 31
TRANSCONF_STATE = 1 << 30
PIPESRC = 0x6001C
PIPE_FRMCOUNT = 0x70040
PIPE_FLIPCOUNT = 0x70044

# --- planes and cursor (§6.11) -------------------------------------------------------------
PLANE_CTL = 0x70180  # DSPCNTR on BDW; plane n (1-based) at + 0x100 * (n - 1)
PLANE_STRIDE = 0x70188
PLANE_POS = 0x7018C
PLANE_SIZE = 0x70190
PLANE_SURF = 0x7019C
PLANE_SURFLIVE = 0x701AC
PLANE_OFFSET = 0x701A4
CURCNTR = 0x70080
CURBASE = 0x70084
CURPOS = 0x70088
CUR_FBC_CTL = 0x700A0
CURSURFLIVE = 0x700AC
PLANE_FLIP_ASYNC = 1 << 9  # BDW DSPCNTR / SKL PLANE_CTL

# --- DP AUX (§6.6) -------------------------------------------------------------------------
AUX_CTL_CPU = 0x64010  # + 0x100 * channel on SKL (A..D); BDW's A
AUX_CTL_PCH = 0xE4110  # BDW's B..D: + 0x100 * (channel - 1)
AUX_SEND_BUSY = 1 << 31
AUX_DONE = 1 << 30
AUX_TIME_OUT_ERROR = 1 << 28
AUX_RECEIVE_ERROR = 1 << 25
AUX_SIZE_SHIFT = 20
AUX_SIZE_MASK = 0x1F << AUX_SIZE_SHIFT
AUX_STATUS = AUX_DONE | AUX_TIME_OUT_ERROR | AUX_RECEIVE_ERROR
AUX_DATA_BYTES = 20

# --- interrupts and hotplug (§6.13) --------------------------------------------------------
DE_PIPE_BANK = DISPLAY_BANKS["DE_PIPE_A"]  # + 0x10 * pipe
DE_PORT_BANK = DISPLAY_BANKS["DE_PORT"]
DE_MISC_BANK = DISPLAY_BANKS["DE_MISC"]
SDE_BANK = DISPLAY_BANKS["SDE"]
MASTER_DE_PIPE_SHIFT = 16
MASTER_DE_PORT = 20
MASTER_DE_MISC = 22
MASTER_DE_PCH = 23
DE_PIPE_VBLANK = 1 << 0
DE_PIPE_CRC_DONE = 1 << 28
FLIP_DONE = {"bdw": 1 << 4, "skl": 1 << 3}
SDE_HOTPLUG = {"bdw": 1 << 21, "skl": 1 << 23}  # port B (LPT), port D (SPT)
PCH_PORT_HOTPLUG = 0xC4030
HOTPLUG_STATUS_SHIFT = {"bdw": 0, "skl": 16}  # port B bits 1:0, port D bits 17:16
HOTPLUG_STATUS_W1C = 0x3 | 0x3 << 8 | 0x3 << 16
HOTPLUG_LONG_PULSE = 2
EDP_PSR_IIR = 0x64838


def pipe_reg(base: int, pipe: int) -> int:
    return base + PIPE_STRIDE * pipe


def port_reg(base: int, port: int) -> int:
    return base + 0x100 * port


def aux_channels(platform: Platform) -> tuple[int, ...]:
    """The AUX CTL registers of channels A-D (each channel's DATA1-5 follow its CTL)."""
    if platform is Platform.BDW:
        return (AUX_CTL_CPU, *(AUX_CTL_PCH + 0x100 * (ch - 1) for ch in range(1, 4)))
    return tuple(AUX_CTL_CPU + 0x100 * ch for ch in range(4))


def planes(platform: Platform, pipe: int) -> tuple[tuple[int, str], ...]:
    """(control register, name) of a pipe's planes, the cursor last: one primary plane on
    BDW, three universal planes on SKL."""
    n = "ABC"[pipe]
    count = 1 if platform is Platform.BDW else 3
    out = tuple((pipe_reg(PLANE_CTL, pipe) + 0x100 * i, f"PLANE_{i + 1}_{n}") for i in range(count))
    return (*out, (pipe_reg(CURCNTR, pipe), f"CUR_{n}"))


PLANE_ARM = 0x1C  # PLANE_SURF / DSPSURF, from the control register: a write arms the plane
CURSOR_ARM = 0x4  # CURBASE
SURFLIVE = 0x2C  # PLANE_SURFLIVE / CURSURFLIVE


def _plane_rows(platform: frozenset[Platform], pipe: int) -> tuple[Row, ...]:
    (p,) = platform
    out: list[Row] = []
    for base, name in planes(p, pipe):
        cursor = name.startswith("CUR")
        # Universal planes 2 and 3 exist on SKL only, so these rows are per platform.
        out.append(
            Row(
                f"{name}_SURF",
                base + (CURSOR_ARM if cursor else PLANE_ARM),
                platforms=platform,
                display=True,
                handler="plane_surf",
                note="arms the plane: latched at the next vblank",
            )
        )
        out.append(
            Row(
                f"{name}_SURFLIVE",
                base + SURFLIVE,
                platforms=platform,
                display=True,
                rw_mask=RO,
                handler="plane_surflive",
                note="the latched surface",
            )
        )
    return tuple(out)


def _rows() -> tuple[Row, ...]:
    d = True
    rows = [
        Row(
            "SFUSE_STRAP",
            SFUSE_STRAP,
            display=d,
            rw_mask=RO,
            reset={Platform.BDW: SFUSE_STRAP_DDIB_DETECTED, Platform.SKL: SFUSE_STRAP_DDID_DETECTED},
            note="the monitor's port detected: DDI B (BDW), DDI D (SKL)",
        ),
        Row("CPU_VGACNTRL", CPU_VGACNTRL, display=d, reset=VGA_DISP_DISABLE),
        Row("PCH_RAWCLK_FREQ", PCH_RAWCLK_FREQ, display=d, reset=RAWCLK_MHZ),
        Row("PCH_PORT_HOTPLUG", PCH_PORT_HOTPLUG, display=d, w1c=HOTPLUG_STATUS_W1C),
        # PSR never fires (no eDP); i915 writes all ones to clear it and then asserts 0.
        Row("EDP_PSR_IIR", EDP_PSR_IIR, display=d, w1c=0xFFFFFFFF),
        # BDW clocks.
        Row("FUSE_STRAP", FUSE_STRAP, platforms=BDW, display=d, rw_mask=RO, note="display present"),
        Row(
            "LCPLL_CTL",
            LCPLL_CTL,
            platforms=BDW,
            display=d,
            reset=LCPLL_PLL_LOCK,
            handler="lcpll",
            note="LOCK follows DISABLE, FCLK_DONE follows CD_SOURCE_FCLK",
        ),
        Row("D_COMP_BDW", D_COMP_BDW, platforms=BDW, display=d, rw_mask=~D_COMP_RCOMP_IN_PROGRESS & 0xFFFFFFFF),
        Row(
            "SBI_CTL_STAT",
            SBI_CTL_STAT,
            platforms=BDW,
            display=d,
            handler="sbi",
            note="a sideband transaction completes at once",
        ),
        *(
            Row(
                f"PORT_CLK_SEL_{'ABCDE'[p]}",
                PORT_CLK_SEL_BASE + 4 * p,
                platforms=BDW,
                display=d,
                reset=PORT_CLK_SEL_NONE,
            )
            for p in range(PORTS)
        ),
        # SKL clocks.
        Row("SKL_DFSM", SKL_DFSM, platforms=SKL, display=d, rw_mask=RO, note="pipes A-C present"),
        Row("DBUF_CTL", DBUF_CTL, platforms=SKL, display=d, handler="dbuf", note="STATE follows REQUEST"),
        Row(
            "DPLL_STATUS",
            DPLL_STATUS,
            platforms=SKL,
            display=d,
            rw_mask=RO,
            handler="dpll_status",
            note="each enabled DPLL locked",
        ),
        Row("DPLL_CTRL2", DPLL_CTRL2, platforms=SKL, display=d, reset=DPLL_CTRL2_POWER_ON),
        *(
            Row(f"DPLL{i}_ENABLE", off, platforms=SKL, display=d, handler="dpll_enable", note="LOCK follows ENABLE")
            for i, off in enumerate(SKL_DPLL_ENABLE)
        ),
    ]
    for p in range(PORTS):
        name = "ABCDE"[p]
        rows += [
            Row(
                f"DDI_BUF_CTL_{name}",
                port_reg(DDI_BUF_CTL_BASE, p),
                display=d,
                reset=DDI_BUF_IS_IDLE,
                handler="ddi_buf",
                note="IDLE while not enabled",
            ),
            Row(
                f"DP_TP_STATUS_{name}",
                port_reg(DP_TP_STATUS_BASE, p),
                display=d,
                rw_mask=RO,
                handler="dp_tp_status",
                note="idle done, ACT sent, from DP_TP_CTL",
            ),
        ]
    for platform in (BDW, SKL):
        (plat,) = platform
        rows += [
            Row(
                f"DP_AUX_CH_CTL_{'ABCD'[ch]}",
                ctl,
                platforms=platform,
                display=d,
                w1c=AUX_STATUS,
                handler="aux",
                note="SEND_BUSY runs the transfer at once; only the monitor's channel answers",
            )
            for ch, ctl in enumerate(aux_channels(plat))
        ]
    for p in range(PIPES):
        n = "ABC"[p]
        rows += [
            Row(
                f"TRANSCONF_{n}",
                pipe_reg(TRANSCONF, p),
                display=d,
                handler="transconf",
                note="STATE follows ENABLE; starts and stops the pipe's frame clock",
            ),
            Row(
                f"PIPEDSL_{n}",
                pipe_reg(PIPEDSL, p),
                display=d,
                rw_mask=RO,
                handler="pipedsl",
                note="the scanline, from the clock",
            ),
            Row(
                f"PIPE_FRMCOUNT_{n}",
                pipe_reg(PIPE_FRMCOUNT, p),
                display=d,
                rw_mask=RO,
                handler="frmcount",
                note="vblanks since the pipe was enabled",
            ),
        ]
        rows += [
            Row(
                f"PIPE_CRC_CTL_{n}",
                pipe_reg(PIPE_CRC_CTL, p),
                display=d,
                handler="pipe_crc_ctl",
                note="enable and source: a CRC of the source's picture at each vblank",
            ),
            Row(
                f"PIPE_CRC_RES_1_{n}",
                pipe_reg(PIPE_CRC_RES_1, p),
                display=d,
                rw_mask=RO,
                note="the last vblank's CRC (CRC-32 of the decoded picture, display/crc.py)",
            ),
        ]
        rows += [*_plane_rows(BDW, p), *_plane_rows(SKL, p)]
    return tuple(rows)


ROWS: tuple[Row, ...] = _rows()
