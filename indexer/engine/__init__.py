"""Engine: framed pixels to pooled, L2-normalised vectors at the tapped layers.

- `loader.BackboneCache`: a backbone built once with its weights, and its engines.
- `runtime`: the tap graph and the engines that run it (eager PyTorch, OpenVINO).
- `extract.embed_prepared`: batched forward passes over prepared images.
- `pooling.pool`: avg / max / GeM pooling of a feature map.
"""
