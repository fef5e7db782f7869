"""The benchmark settles its own heap before each measured round, so that its collector does
not stop the load generator (and the baseline's relay) in the middle of one."""

import gc

from bench.common import settle_heap


def test_settle_heap_takes_what_is_alive_out_of_the_collectors_walk():
    before = gc.get_threshold()
    kept = [[i] for i in range(2_000)]  # records the benchmark keeps for the whole run
    try:
        settle_heap()
        oldest = {id(o) for o in gc.get_objects(generation=2)}
        assert gc.get_freeze_count() >= len(kept)
        assert not any(id(record) in oldest for record in kept)
        assert gc.get_threshold() == (*before[:2], 1000)  # full collections wait for the next round
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
