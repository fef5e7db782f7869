"""Replays overlapping in one process share the collector's change; the last to end undoes it
(the rebuild itself is tested against the database in tests/integration/test_rebuild.py)."""

import gc

from shared.projection import FULL_COLLECTION_EVERY, _rare_full_collections


def test_overlapping_replays_leave_the_collector_as_it_was():
    before = gc.get_threshold()
    first, second = _rare_full_collections(), _rare_full_collections()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first to start ends first
    assert gc.get_threshold() == (*before[:2], max(before[2], FULL_COLLECTION_EVERY))
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before
