"""Store: SQL is the source of truth (collections, items, labels, vectors); each
(collection, depth) has a FAISS index derived from it.

- `database`: engine, sessions and the Alembic migrations in `migrations/`.
- `models`, `repository`, `label_repository`: the tables and the functions that read and
  write them inside a caller's session.
- `index_manager.IndexManager`: the live FAISS indexes, their saves and rebuilds.
- `index_policy`, `vector_index`, `faiss_device`: index kinds, files and the GPU copy.
"""
