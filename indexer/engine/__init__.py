"""Engine: framed pixels to pooled, L2-normalised vectors at the tapped layers.

- `loader.BackboneCache`: a backbone built once with its weights, and its engines.
- `graph.TapGraph`: the one computation (normalise, forward, tap, pool, normalise).
- `torch_engine`, `openvino_engine`: what runs that graph; `factory.EngineFactory` picks and
  keeps one per set of taps; `options.RuntimeOptions` says how.
- `extract.embed_prepared`: batched forward passes over prepared images.
- `pooling.pool`: avg / max / GeM pooling of a feature map.
"""
