"""The `ltx` CLI: one cached stage per pipeline step, connecting `ltx/` (the model) and `cache/` (the store)."""

import ltx  # noqa: F401  (first: it sets OpenBLAS's thread timeout before cache/ imports numpy)
