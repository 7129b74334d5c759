"""Catalog: the use cases of a collection of images, each a function taking a `Context`.

- `context.Context`: settings, database sessions, backbones and indexes, built at start-up.
- `collections`: create / list / get / delete collections.
- `ingest.add_images`, `items`: add, replace, look up and delete items.
- `search.search`, `embed.embed_images`, `classify.classify`, `duplicates.find_duplicates`.
"""
