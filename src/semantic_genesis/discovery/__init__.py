"""Self-discovery of anatomical patterns (Semantic Genesis, Haghighi et al., MICCAI 2020).

The pipeline, one module per step:

* :mod:`.scans` -- the cohort: patients, train/validation split, loading a scan as float32 in [0, 1];
* :mod:`.autoencoder` -- an autoencoder trained on whole scans resized to ``discovery.ae_input_size``;
* :mod:`.features` -- one vector per patient: the global average of the autoencoder bottleneck;
* :mod:`.neighbours` -- top-K nearest patients by L2 distance (exact in torch, faiss for large sets);
* :mod:`.coordinates` -- crop positions that fit every neighbour, are spread apart and pass a content test;
* :mod:`.plan` -- the reference strategies (``paper``: one reference, C coordinates; ``per_class``: the
  official code's one reference per class);
* :mod:`.patterns` -- crops at every coordinate in every neighbour (multi-resolution), written as a
  sharded pattern set whose labels are the coordinate indices;
* :mod:`.pipeline` -- the resumable ``semantic-genesis discover`` stages.

Two values in ``discovery.pattern_size`` (``[H, W]``) make every step 2D (Semantic Genesis 2D: whole
radiographs or axial CT slices, 2D patterns; see :func:`.scans.spatial_dims`).

Importing this package is cheap; the submodules import torch where they need it.
"""
