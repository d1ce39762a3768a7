"""Worker run in a spawned process by the contract tests' race (kept import-light)."""

from __future__ import annotations

import random
import time
from multiprocessing.synchronize import Barrier
from typing import Any

from streamkit.dedup import ClaimResult, open_store


def claim_all(url: str, keys: list[str], seed: int, barrier: Barrier, results: Any) -> None:
    """Claim ``keys`` in order, from the start signal on; report the ones won.

    Batch sizes (1 to 8) and pauses (0 to 2 ms, a stand-in for handling) are random, so
    the lead changes between the racers: in lockstep the leader would win every key,
    and without pauses the SQLite lock holder re-takes the lock before the other
    process's busy handler wakes up. Won keys are completed at once, so the other
    racer sees a mix of DUPLICATE and IN_PROGRESS.
    """
    rng = random.Random(seed)
    store = open_store(url)
    try:
        barrier.wait(timeout=30)
        won: list[str] = []
        start = 0
        while start < len(keys):
            batch = keys[start : start + rng.randint(1, 8)]
            start += len(batch)
            claimed = [
                key
                for key, result in zip(batch, store.claim(batch), strict=True)
                if result is ClaimResult.CLAIMED
            ]
            store.complete(claimed)
            won.extend(claimed)
            time.sleep(rng.uniform(0, 0.002))
        results.put(won)
    finally:
        store.close()
