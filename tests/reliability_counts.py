"""The counts the README's reliability section quotes, computed from the test tables.

    python tests/reliability_counts.py            # from the tables (no test run)
    python -m pytest -s tests/test_bad_inputs.py tests/test_reliability.py | grep RELIABILITY   # as measured

The kill count is a lower bound the tests enforce (each chain kills once per phase of the run;
a kill that lands after the process already finished is not counted, and the test asserts at least
MIN_KILLS landed).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def counts() -> dict[str, int]:
    import test_bad_inputs as bad
    import test_reliability as rel

    stages = 8  # encode, denoise, upsample, refine, decode, decode_audio, vocode, mux (distilled, two-stage)
    return {
        "bad inputs tried": len(bad.CASES),
        "kill chains": len(rel.CHAIN_SEEDS),
        "kill points (at least)": rel.MIN_KILLS,
        "kill phases per chain": stages + 1,
        "failed-write faults": len(rel.WRITE_FAULTS),
        "corruption kinds": len(rel.DAMAGES),
        "concurrent generates": 2,
    }


if __name__ == "__main__":
    for k, v in counts().items():
        print(f"{k}: {v}")
