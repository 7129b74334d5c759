"""Strata's library: layered ImageNet CNN embeddings, a FAISS + SQL store, probes and labels.

The library never imports gRPC; `service/` wraps it.
"""

__version__ = "0.1.0"
