"""The `ltx` CLI: one cached stage per pipeline step, connecting `ltx/` (the model) and `cache/` (the store)."""
