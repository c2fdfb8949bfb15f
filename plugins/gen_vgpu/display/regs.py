"""Display register offsets and fields (contract §6), named as in i915. Per-pipe and
per-transcoder registers step by 0x1000, per-port ones by 0x100, as the helpers say."""

from __future__ import annotations

# --- presence, straps, clocks (§6.2.1) -----------------------------------------------------
FUSE_STRAP = 0x42014  # BDW: 0 = display present
SKL_DFSM = 0x51000  # SKL: 0 = pipes A/B/C present
SFUSE_STRAP = 0xC2014
SFUSE_STRAP_DDIB_DETECTED = 1 << 2
SFUSE_STRAP_DDID_DETECTED = 1 << 0
CPU_VGACNTRL = 0x41000
VGA_DISP_DISABLE = 1 << 31
PCH_RAWCLK_FREQ = 0xC6204
RAWCLK_MHZ = {"bdw": 125, "skl": 24}

# --- power wells, DBUF, DC (§6.3) ----------------------------------------------------------
DBUF_CTL = 0x45008
DBUF_POWER_REQUEST = 1 << 31
DBUF_POWER_STATE = 1 << 30
D_COMP_BDW = 0x138144
D_COMP_RCOMP_IN_PROGRESS = 1 << 9

# --- CDCLK and PLLs (§6.4) -----------------------------------------------------------------
LCPLL_CTL = 0x130040  # BDW
LCPLL_PLL_DISABLE = 1 << 31
LCPLL_PLL_LOCK = 1 << 30
LCPLL_CD_SOURCE_FCLK = 1 << 21
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
PIPE_CRC_CTL = 0x60050
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
DE_PIPE_BANK = 0x44400  # + 0x10 * pipe
DE_PORT_BANK = 0x44440
DE_MISC_BANK = 0x44460
SDE_BANK = 0xC4000
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
