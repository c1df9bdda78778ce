"""FAR: frame-autoregressive video models (Gu, Mao, Shou 2025), re-implemented.

The package imports nothing from ``bench``; it maps latents to velocities (``model``), defines the
flow-matching process (``flow``), the frame-by-frame rollout (``sample``) with typed KV caches
(``cache``), the DC-AE autoencoder (``autoencoder``) and official-checkpoint loading (``official``).
"""

from far.model import FAR, FARConfig, PRESETS, build_far

__all__ = ["FAR", "FARConfig", "PRESETS", "build_far"]
