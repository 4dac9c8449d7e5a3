"""The radix tree over KV slots (RadixAttention's prefix cache) and its no-op twin.

Each edge holds a run of token ids (`key`) and the KV slots that hold them (`value`). A running
request holds one lock on its deepest matched node; locked nodes (and their ancestors) are never
evicted. Eviction pops unlocked leaves in LRU order.

Accounting invariant when no request runs:
    allocator.available_size() + cache.evictable_size() == total slots
"""

from __future__ import annotations

import heapq
import itertools
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import torch

from .kv_pool import ReqToTokenPool, TokenToKVPoolAllocator

if TYPE_CHECKING:
    from ..scheduler.req import Req

_node_ids = itertools.count()


class TreeNode:
    __slots__ = ("children", "parent", "key", "value", "lock_ref", "last_access_time", "hit_count", "id")

    def __init__(self, parent: TreeNode | None = None) -> None:
        self.children: dict[int, TreeNode] = {}
        self.parent = parent
        self.key: list[int] = []
        self.value: torch.Tensor | None = None  # [len(key)] int64 slots
        self.lock_ref = 0
        self.last_access_time = time.monotonic()
        self.hit_count = 0
        self.id = next(_node_ids)

    def __lt__(self, other: TreeNode) -> bool:
        return self.last_access_time < other.last_access_time


class BasePrefixCache(ABC):
    """What the scheduler needs from a prefix cache."""

    @abstractmethod
    def match_prefix(self, key: list[int]) -> tuple[torch.Tensor, Any]:
        """Longest cached prefix of `key`: (slots [n] int64, last node). May split an edge."""

    @abstractmethod
    def cache_finished_req(self, req: Req) -> None:
        """Give a finished (or retracted) request's KV to the cache, free its row, drop its lock."""

    @abstractmethod
    def cache_unfinished_req(self, req: Req) -> None:
        """After a prefill chunk: publish the request's KV so far and move its lock to the new node."""

    @abstractmethod
    def evict(self, num_tokens: int) -> int:
        """Free at least `num_tokens` slots from unlocked leaves if possible; returns slots freed."""

    @abstractmethod
    def inc_lock_ref(self, node: Any) -> None: ...

    @abstractmethod
    def dec_lock_ref(self, node: Any) -> None: ...

    @abstractmethod
    def evictable_size(self) -> int: ...

    @abstractmethod
    def protected_size(self) -> int: ...

    @abstractmethod
    def reset(self) -> None: ...

    def stats(self) -> dict[str, Any]:
        return {}

    def snapshot(self, max_nodes: int = 64, preview: Any = None) -> dict[str, Any]:
        return {"enabled": False, "nodes": []}


class RadixCache(BasePrefixCache):
    def __init__(self, req_to_token_pool: ReqToTokenPool, allocator: TokenToKVPoolAllocator) -> None:
        self.req_to_token_pool = req_to_token_pool
        self.allocator = allocator
        self.evictions = 0
        self.evicted_tokens = 0
        self.reset()

    def reset(self) -> None:
        self.root = TreeNode()
        self.root.value = torch.empty(0, dtype=torch.int64, device=self.allocator.device)
        self.root.lock_ref = 1  # the root is never evicted
        self._evictable = 0
        self._protected = 0

    # ---- lookup and insertion ----------------------------------------------------------------

    def match_prefix(self, key: list[int]) -> tuple[torch.Tensor, TreeNode]:
        values: list[torch.Tensor] = []
        node = self.root
        now = time.monotonic()
        node.last_access_time = now
        pos = 0
        while pos < len(key):
            child = node.children.get(key[pos])
            if child is None:
                break
            n = _common_len(child.key, key, pos)
            if n < len(child.key):
                child = self._split(child, n)
            child.last_access_time = now
            values.append(child.value)  # type: ignore[arg-type]
            node = child
            pos += n
            if n == 0:
                break
        if values:
            return torch.cat(values), node
        return self.root.value, node  # type: ignore[return-value]

    def insert(self, key: list[int], value: torch.Tensor) -> int:
        """Insert `key` -> `value`; returns how many leading tokens were already present."""
        node = self.root
        now = time.monotonic()
        pos = 0
        while pos < len(key):
            child = node.children.get(key[pos])
            if child is None:
                leaf = TreeNode(node)
                leaf.key = list(key[pos:])
                leaf.value = value[pos:].clone()
                leaf.last_access_time = now
                node.children[key[pos]] = leaf
                self._evictable += len(leaf.key)
                return pos
            n = _common_len(child.key, key, pos)
            if n < len(child.key):
                child = self._split(child, n)
            child.last_access_time = now
            child.hit_count += 1
            node = child
            pos += n
        return pos

    def _split(self, child: TreeNode, n: int) -> TreeNode:
        """Cut `child`'s edge after n tokens; returns the new upper node (which keeps the locks)."""
        upper = TreeNode(child.parent)
        upper.key = child.key[:n]
        upper.value = child.value[:n]  # type: ignore[index]
        upper.lock_ref = child.lock_ref
        upper.last_access_time = child.last_access_time
        upper.hit_count = child.hit_count
        upper.children = {child.key[n]: child}
        assert child.parent is not None
        child.parent.children[upper.key[0]] = upper
        child.parent = upper
        child.key = child.key[n:]
        child.value = child.value[n:]  # type: ignore[index]
        return upper

    # ---- requests ----------------------------------------------------------------------------

    def cache_finished_req(self, req: Req) -> None:
        kv_len = req.kv_committed_len
        row = self.req_to_token_pool.req_to_token[req.req_pool_idx, :kv_len].to(torch.int64)
        token_ids = req.all_token_ids()[:kv_len]
        old_prefix_len = len(req.prefix_indices)
        present = self.insert(token_ids, row)
        # Slots this request computed for tokens another request had already published.
        self.allocator.free(row[old_prefix_len:present])
        assert req.req_pool_idx is not None
        self.req_to_token_pool.free(req.req_pool_idx)
        self.dec_lock_ref(req.last_node)
        req.release_kv_refs()

    def cache_unfinished_req(self, req: Req) -> None:
        kv_len = req.kv_committed_len
        row_view = self.req_to_token_pool.req_to_token[req.req_pool_idx]
        row = row_view[:kv_len].to(torch.int64)
        token_ids = req.all_token_ids()[:kv_len]
        old_prefix_len = len(req.prefix_indices)
        present = self.insert(token_ids, row)
        self.allocator.free(row[old_prefix_len:present])
        new_indices, new_node = self.match_prefix(token_ids)
        assert len(new_indices) == kv_len, (len(new_indices), kv_len)
        row_view[old_prefix_len:kv_len] = new_indices[old_prefix_len:].to(torch.int32)
        self.inc_lock_ref(new_node)
        self.dec_lock_ref(req.last_node)
        req.prefix_indices = new_indices
        req.last_node = new_node

    # ---- locks and eviction ------------------------------------------------------------------

    def inc_lock_ref(self, node: TreeNode | None) -> None:
        while node is not None and node is not self.root:
            if node.lock_ref == 0:
                self._evictable -= len(node.key)
                self._protected += len(node.key)
            node.lock_ref += 1
            node = node.parent

    def dec_lock_ref(self, node: TreeNode | None) -> None:
        while node is not None and node is not self.root:
            assert node.lock_ref > 0, "lock released twice"
            if node.lock_ref == 1:
                self._evictable += len(node.key)
                self._protected -= len(node.key)
            node.lock_ref -= 1
            node = node.parent

    def evict(self, num_tokens: int) -> int:
        leaves = [n for n in self._all_nodes() if not n.children and n.lock_ref == 0 and n is not self.root]
        heapq.heapify(leaves)
        freed = 0
        while freed < num_tokens and leaves:
            leaf = heapq.heappop(leaves)
            assert leaf.lock_ref == 0
            self.allocator.free(leaf.value)  # type: ignore[arg-type]
            freed += len(leaf.key)
            self._evictable -= len(leaf.key)
            parent = leaf.parent
            assert parent is not None
            del parent.children[leaf.key[0]]
            if parent is not self.root and not parent.children and parent.lock_ref == 0:
                heapq.heappush(leaves, parent)
        if freed:
            self.evictions += 1
            self.evicted_tokens += freed
        return freed

    def evictable_size(self) -> int:
        return self._evictable

    def protected_size(self) -> int:
        return self._protected

    def _all_nodes(self) -> list[TreeNode]:
        out, stack = [], [self.root]
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(node.children.values())
        return out

    # ---- observability -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        nodes = self._all_nodes()
        return {
            "num_nodes": len(nodes) - 1,
            "cached_tokens": self._evictable + self._protected,
            "evictable_tokens": self._evictable,
            "locked_tokens": self._protected,
            "evictions": self.evictions,
            "evicted_tokens": self.evicted_tokens,
        }

    def snapshot(self, max_nodes: int = 64, preview: Any = None) -> dict[str, Any]:
        """A bounded JSON view: the `max_nodes` most recently used nodes plus their ancestors.

        `preview(token_ids) -> str` renders a token preview (the first 16 tokens of each edge).
        """
        nodes = self._all_nodes()[1:]
        nodes.sort(key=lambda n: n.last_access_time, reverse=True)
        keep: dict[int, TreeNode] = {}
        for node in nodes:
            if len(keep) >= max_nodes:
                break
            cur: TreeNode | None = node
            while cur is not None and cur is not self.root and cur.id not in keep:
                keep[cur.id] = cur
                cur = cur.parent
        now = time.monotonic()
        out = []
        for node in keep.values():
            head = node.key[:16]
            out.append({
                "id": node.id,
                "parent": None if node.parent is self.root or node.parent is None else node.parent.id,
                "num_tokens": len(node.key),
                "token_ids_preview": head,
                "text_preview": preview(head) if preview else None,
                "lock_ref": node.lock_ref,
                "hit_count": node.hit_count,
                "last_access_age_s": round(now - node.last_access_time, 3),
                "num_children": len(node.children),
            })
        return {"enabled": True, "total_nodes": len(nodes), "truncated": len(nodes) > len(out), "nodes": out}


class ChunkCache(BasePrefixCache):
    """--disable-radix-cache: nothing is shared; only chunked prefill keeps a request's own KV."""

    def __init__(self, req_to_token_pool: ReqToTokenPool, allocator: TokenToKVPoolAllocator) -> None:
        self.req_to_token_pool = req_to_token_pool
        self.allocator = allocator
        self._empty = torch.empty(0, dtype=torch.int64, device=allocator.device)

    def reset(self) -> None:
        pass

    def match_prefix(self, key: list[int]) -> tuple[torch.Tensor, None]:
        return self._empty, None

    def cache_finished_req(self, req: Req) -> None:
        row = self.req_to_token_pool.req_to_token[req.req_pool_idx, :req.kv_committed_len].to(torch.int64)
        self.allocator.free(row)
        assert req.req_pool_idx is not None
        self.req_to_token_pool.free(req.req_pool_idx)
        req.release_kv_refs()

    def cache_unfinished_req(self, req: Req) -> None:
        row = self.req_to_token_pool.req_to_token[req.req_pool_idx, :req.kv_committed_len].to(torch.int64)
        req.prefix_indices = row
        req.last_node = None

    def evict(self, num_tokens: int) -> int:
        return 0

    def inc_lock_ref(self, node: Any) -> None:
        pass

    def dec_lock_ref(self, node: Any) -> None:
        pass

    def evictable_size(self) -> int:
        return 0

    def protected_size(self) -> int:
        return 0


def _common_len(edge: list[int], key: list[int], pos: int) -> int:
    n = min(len(edge), len(key) - pos)
    i = 0
    while i < n and edge[i] == key[pos + i]:
        i += 1
    return i
