"""Temporal re-localization: training pairs and the algorithms that are not learned models.

Torch-free modules:

* :mod:`.sampler` -- the training pair sampler;
* :mod:`.labels` -- per-step label vectors and loss weights of the matching model;
* :mod:`.decode` -- Eq. 12 span decoding, vectorised with cumulative sums;
* :mod:`.framedp` -- the frame-level baseline, solved exactly by Dinkelbach iteration;
* :mod:`.sst` -- SST anchor enumeration, tIoU labelling and 1-D NMS.
"""
