"""Sampling G at scale: latent streams, shard layout, export formats, the writer process, manifest, card."""
