"""Baseline video-model families, each in one file and importing nothing from ``bench``.

- ``video_dit``: a Latte-style video DiT on the same latents as FAR (full-sequence flow matching,
  one timestep per clip, bidirectional attention; joint or alternating spatial/temporal blocks).
- ``vq``: a per-frame finite-scalar-quantization (FSQ) tokenizer.
- ``token_ar``: a causal transformer over the frame-major token sequence with a static KV cache.

The building blocks (RoPE, QK RMSNorm, adaLN modulation, timestep embedding, patchify) and the
flow-matching functions are FAR's own (``far.model``, ``far.flow``), so a comparison isolates the
modelling choice rather than implementation details.
"""
