"""Flatten the request-to-token table into the page-index list that paged attention kernels take.

With page size 1, request i's pages are `req_to_token[row_i, start_i : start_i + len_i]`; the flat
list concatenates them in batch order, so request i's pages begin at `sum(len_0 .. len_{i-1})`.
One program per request computes that offset itself (a masked sum over the lengths), which keeps
the whole step on the device: no index pointer has to be copied from the host first.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _kv_indices_kernel(Table, Rows, Lens, Starts, Out, stride_table, bs,
                       HAS_START: tl.constexpr, BLOCK_BS: tl.constexpr, BLOCK: tl.constexpr):  # noqa: ANN001
    i = tl.program_id(0)
    offs_b = tl.arange(0, BLOCK_BS)
    lens = tl.load(Lens + offs_b, mask=offs_b < bs, other=0).to(tl.int64)
    base = tl.sum(tl.where(offs_b < i, lens, 0), 0)
    n = tl.load(Lens + i).to(tl.int64)
    row = tl.load(Rows + i).to(tl.int64)
    start = 0
    if HAS_START:
        start = tl.load(Starts + i).to(tl.int64)
    src = Table + row * stride_table + start
    for off in range(0, n, BLOCK):
        offs = off + tl.arange(0, BLOCK)
        m = offs < n
        tl.store(Out + base + offs, tl.load(src + offs, mask=m, other=0), mask=m)


def build_kv_indices(req_to_token: torch.Tensor, rows: torch.Tensor, lens: torch.Tensor,
                     out: torch.Tensor, starts: torch.Tensor | None = None) -> torch.Tensor:
    """Write req_to_token[rows[i], starts[i] : starts[i] + lens[i]] for each i, concatenated, into
    `out` (int32, large enough for sum(lens)); returns `out`. All inputs live on the device."""
    bs = rows.shape[0]
    if bs == 0:
        return out
    _kv_indices_kernel[(bs,)](req_to_token, rows, lens, starts if starts is not None else lens, out,
                              req_to_token.stride(0), bs, HAS_START=starts is not None,
                              BLOCK_BS=triton.next_power_of_2(bs), BLOCK=512, num_warps=4)
    return out
