"""A content-addressed store of zarr artifacts: keys, atomic publish, verification, gc. Knows nothing of LTX."""
