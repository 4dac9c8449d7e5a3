"""KV memory: the request-to-token table, the per-layer K/V buffers, and the slot allocator.

Two-level mapping with page size 1:

    req_to_token[req_pool_idx, position] -> slot       (ReqToTokenPool)
    k_buffer[layer][slot], v_buffer[layer][slot]       (TokenToKVPool)

Slot 0 is never handed out: padded rows (CUDA-graph padding, dummy requests) write their KV there.
"""

from __future__ import annotations

import torch


class ReqToTokenPool:
    """A row per running request holding the KV slot of each of its positions."""

    def __init__(self, size: int, max_context_len: int, device: str) -> None:
        self.size = size
        self.max_context_len = max_context_len
        self.device = device
        self.req_to_token = torch.zeros((size, max_context_len), dtype=torch.int32, device=device)
        self.free_slots: list[int] = list(range(size))

    def available_size(self) -> int:
        return len(self.free_slots)

    def alloc(self, need: int) -> list[int] | None:
        if need > len(self.free_slots):
            return None
        taken, self.free_slots = self.free_slots[:need], self.free_slots[need:]
        return taken

    def free(self, idx: int) -> None:
        self.free_slots.append(idx)

    def clear(self) -> None:
        self.free_slots = list(range(self.size))


class TokenToKVPoolAllocator:
    """Free-slot allocator over slots 1..size (slot 0 is the reserved dummy).

    Freed slots are merged back lazily and kept sorted, so low slots are reused first: on CPU the
    pool is allocated uncommitted and only the pages that are ever written cost memory.
    """

    def __init__(self, size: int, device: str) -> None:
        self.size = size
        self.device = device
        self.clear()

    def clear(self) -> None:
        self.free_slots = torch.arange(1, self.size + 1, dtype=torch.int64, device=self.device)
        self._pending: list[torch.Tensor] = []
        self._num_pending = 0

    def available_size(self) -> int:
        return len(self.free_slots) + self._num_pending

    def alloc(self, need: int) -> torch.Tensor | None:
        if need > len(self.free_slots) and self._pending:
            self._merge()
        if need > len(self.free_slots):
            return None
        out, self.free_slots = self.free_slots[:need], self.free_slots[need:]
        return out

    def free(self, slots: torch.Tensor) -> None:
        if slots.numel() == 0:
            return
        self._pending.append(slots.to(torch.int64))
        self._num_pending += slots.numel()
        if self._num_pending > 4096:
            self._merge()

    def _merge(self) -> None:
        merged = torch.cat([self.free_slots, *self._pending])
        self.free_slots = torch.sort(merged).values
        self._pending, self._num_pending = [], 0


class MHATokenToKVPool:
    """Per-layer K and V buffers shaped [size + 1, num_kv_heads, head_dim]."""

    def __init__(self, size: int, dtype: torch.dtype, num_kv_heads: int, head_dim: int, num_layers: int,
                 device: str, v_head_dim: int | None = None) -> None:
        self.size = size
        self.dtype = dtype
        self.device = device
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.v_head_dim = v_head_dim or head_dim
        self.num_layers = num_layers
        # torch.empty: on CPU untouched pages are never committed, so a generous pool is cheap.
        self.k_buffer = [torch.empty((size + 1, num_kv_heads, head_dim), dtype=dtype, device=device)
                         for _ in range(num_layers)]
        self.v_buffer = [torch.empty((size + 1, num_kv_heads, self.v_head_dim), dtype=dtype, device=device)
                         for _ in range(num_layers)]
        # Slot 0 is read by padded rows; keep it finite.
        for buf in self.k_buffer + self.v_buffer:
            buf[0].zero_()

    @staticmethod
    def cell_size(dtype: torch.dtype, num_kv_heads: int, head_dim: int, num_layers: int,
                  v_head_dim: int | None = None) -> int:
        """Bytes of KV per token."""
        elem = torch.tensor([], dtype=dtype).element_size()
        return num_layers * num_kv_heads * (head_dim + (v_head_dim or head_dim)) * elem

    def get_key_buffer(self, layer_id: int) -> torch.Tensor:
        return self.k_buffer[layer_id]

    def get_value_buffer(self, layer_id: int) -> torch.Tensor:
        return self.v_buffer[layer_id]

    def set_kv_buffer(self, layer_id: int, loc: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write new K/V ([num_tokens, kv_heads, head_dim]) into the slots `loc` ([num_tokens])."""
        if k.dtype != self.dtype:
            k, v = k.to(self.dtype), v.to(self.dtype)
        self.k_buffer[layer_id][loc] = k
        self.v_buffer[layer_id][loc] = v
