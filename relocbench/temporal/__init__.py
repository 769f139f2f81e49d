"""Temporal re-localization: labels, decoding, the frame-level baseline, SST helpers and the training pair sampler."""
