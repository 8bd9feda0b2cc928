"""The counts the README's reliability section quotes, computed from the test tables.

    python tests/reliability_counts.py            # from the tables (no test run)
    python -m pytest -s tests/test_bad_inputs.py tests/test_reliability.py | grep RELIABILITY   # as measured

Each kill chain plans one seeded kill point per phase of the run (tests/test_reliability.py `_kill_plan`);
a kill whose process had already finished is not counted, and the tests assert that at least MIN_KILLS
landed and that every stage was killed at least once (where each landed is read back from the cache).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def counts() -> dict[str, int]:
    import test_bad_inputs as bad
    import test_reliability as rel
    import test_retake_bad_inputs as retake_bad

    return {
        "bad inputs tried": len(bad.CASES) + len(retake_bad.CASES),  # generate, the steps, sweep; retake/extend
        "kill chains": len(rel.CHAIN_SEEDS),
        "seeded kill points": sum(len(rel._kill_plan(seed)) for seed in rel.CHAIN_SEEDS),
        "kills that must land (at least)": rel.MIN_KILLS,
        "stages each must hit": len(rel.STAGES),
        "failed-write faults": len(rel.WRITE_FAULTS) + 1,  # + the one-line CLI error
        "corruption kinds": len(rel.DAMAGES),
        "Ctrl-C interrupts": 1,
        "concurrent generates": 2,
    }


if __name__ == "__main__":
    for k, v in counts().items():
        print(f"{k}: {v}")
