"""The render engine's 3D and media pipelines: state commands parsed and checked into a plain
record, RECTLIST draws rasterised and shaded, media objects and GPGPU walkers dispatched, each
running its kernel on the EU interpreter (:mod:`gen_vgpu.eu`); docs/render.md."""
