"""Store: SQL is the source of truth (collections, items, labels, vectors); each
(collection, depth) has a FAISS index derived from it.

- `database`: engine, sessions and the Alembic migrations in `migrations/`.
- `models`, `repository`, `label_repository`: the tables and the functions that read and
  write them inside a caller's session.
- `index_manager.IndexManager`: the live FAISS indexes, their saves and rebuilds.
- `vector_index.VectorIndex`: one live index; `index_files` (atomic files + manifests),
  `rebuild_journal` (writes replayed onto a rebuilt index), `index_policy` (which kind, how
  trained), `faiss_device` (the GPU copy), `faiss_tools`.
"""
