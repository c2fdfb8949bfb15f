"""The execution units: GEN8/GEN9 EU instructions decoded (native 128-bit and compacted 64-bit
forms), disassembled, assembled for the project's own kernels, and interpreted across every
lane of a batch of threads at once (docs/render.md)."""
