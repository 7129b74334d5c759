"""Core: what every other layer of the library may use, and that uses nothing of theirs.

- `errors`: the domain exceptions (`StrataError` and its kinds), each with a hint on how to fix.
- `settings`: the one typed `Settings` object, read from flags and `STRATA_*` variables.
- `vocabulary`: names, defaults and limits (depth presets, poolings, framings, label sources,
  request limits) defined once, with no heavy import.
"""
