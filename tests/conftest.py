import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Before any test module imports mlx: ltx.backend loads the optimised BLAS, which must precede mlx.
import ltx.backend  # noqa: E402, F401
