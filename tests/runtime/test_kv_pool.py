import torch

from sglang_nb.runtime.mem_cache.kv_pool import MHATokenToKVPool, ReqToTokenPool, TokenToKVPoolAllocator


def test_allocator_never_hands_out_slot_zero_and_reuses_low_slots():
    alloc = TokenToKVPoolAllocator(16, "cpu")
    a = alloc.alloc(10)
    assert a is not None and 0 not in a.tolist() and a.tolist() == list(range(1, 11))
    assert alloc.alloc(7) is None  # only 6 left
    alloc.free(a[:4])
    assert alloc.available_size() == 10
    b = alloc.alloc(8)  # needs the freed slots: merged and sorted, lowest first
    assert b is not None and b.tolist()[:4] == [1, 2, 3, 4]


def test_req_to_token_pool_rows():
    pool = ReqToTokenPool(3, 8, "cpu")
    rows = pool.alloc(2)
    assert rows == [0, 1] and pool.available_size() == 1
    assert pool.alloc(2) is None
    pool.free(0)
    assert pool.available_size() == 2


def test_kv_pool_write_and_read():
    pool = MHATokenToKVPool(8, torch.float32, num_kv_heads=2, head_dim=4, num_layers=2, device="cpu")
    k = torch.randn(3, 2, 4)
    v = torch.randn(3, 2, 4)
    loc = torch.tensor([5, 1, 7])
    pool.set_kv_buffer(1, loc, k, v)
    assert torch.equal(pool.get_key_buffer(1)[loc], k)
    assert torch.equal(pool.get_value_buffer(1)[loc], v)
    assert MHATokenToKVPool.cell_size(torch.float32, 2, 4, 2) == 2 * 2 * 8 * 4
