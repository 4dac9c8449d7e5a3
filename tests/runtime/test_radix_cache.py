"""RadixCache invariants: matching, splitting, locking, eviction and accounting."""

import random

import torch

from sglang_nb.runtime.mem_cache.kv_pool import ReqToTokenPool, TokenToKVPoolAllocator
from sglang_nb.runtime.mem_cache.radix_cache import ChunkCache, RadixCache


def make(total: int = 256) -> tuple[RadixCache, TokenToKVPoolAllocator]:
    alloc = TokenToKVPoolAllocator(total, "cpu")
    return RadixCache(ReqToTokenPool(4, 64, "cpu"), alloc), alloc


def insert(cache: RadixCache, alloc: TokenToKVPoolAllocator, key: list[int]) -> int:
    slots = alloc.alloc(len(key))
    present = cache.insert(key, slots)
    alloc.free(slots[:present])  # the caller frees its duplicates
    return present


def test_match_and_split():
    cache, alloc = make()
    insert(cache, alloc, [1, 2, 3, 4, 5])
    value, node = cache.match_prefix([1, 2, 3, 9])
    assert len(value) == 3 and node.key == [1, 2, 3]  # the edge was split at the mismatch
    assert cache.match_prefix([7])[0].numel() == 0
    full, _ = cache.match_prefix([1, 2, 3, 4, 5, 6])
    assert len(full) == 5


def test_insert_of_existing_prefix_returns_its_length():
    cache, alloc = make()
    assert insert(cache, alloc, [1, 2, 3, 4]) == 0
    assert insert(cache, alloc, [1, 2, 3, 4]) == 4
    assert insert(cache, alloc, [1, 2, 3, 4, 5, 6]) == 4
    assert insert(cache, alloc, [1, 2, 9]) == 2
    assert cache.evictable_size() == 7  # 1 2 3 4 5 6 + 9


def test_idle_accounting_free_plus_evictable_is_total():
    cache, alloc = make(512)
    rng = random.Random(0)
    for _ in range(50):
        key = [rng.randrange(5) for _ in range(rng.randrange(1, 12))]
        insert(cache, alloc, key)
        assert alloc.available_size() + cache.evictable_size() == 512
    cache.evict(10**9)
    assert cache.evictable_size() == 0 and alloc.available_size() == 512


def test_eviction_never_frees_a_locked_node():
    cache, alloc = make()
    insert(cache, alloc, [1, 2, 3])
    insert(cache, alloc, [4, 5, 6, 7])
    locked_value, node = cache.match_prefix([1, 2, 3])
    cache.inc_lock_ref(node)
    assert cache.protected_size() == 3 and cache.evictable_size() == 4
    freed = cache.evict(100)
    assert freed == 4
    again, _ = cache.match_prefix([1, 2, 3])
    assert torch.equal(again, locked_value)
    cache.dec_lock_ref(node)
    assert cache.evict(100) == 3
    assert alloc.available_size() == 256


def test_lru_order():
    cache, alloc = make()
    insert(cache, alloc, [1, 1])
    insert(cache, alloc, [2, 2])
    cache.match_prefix([1, 1])  # touch: [2, 2] is now least recently used
    cache.evict(1)
    assert cache.match_prefix([1, 1])[0].numel() == 2
    assert cache.match_prefix([2, 2])[0].numel() == 0


def test_snapshot_is_bounded_and_json_ready():
    import json

    cache, alloc = make(4096)
    for i in range(100):
        insert(cache, alloc, [i, i + 1, i + 2])
    snap = cache.snapshot(max_nodes=10, preview=lambda ids: " ".join(map(str, ids)))
    assert snap["truncated"] and len(snap["nodes"]) == 10
    json.dumps(snap)
    assert {"lock_ref", "token_ids_preview", "text_preview", "last_access_age_s"} <= set(snap["nodes"][0])


def test_chunk_cache_shares_nothing():
    alloc = TokenToKVPoolAllocator(16, "cpu")
    cache = ChunkCache(ReqToTokenPool(2, 8, "cpu"), alloc)
    assert cache.match_prefix([1, 2, 3])[0].numel() == 0
    assert cache.evictable_size() == 0 and cache.evict(5) == 0
