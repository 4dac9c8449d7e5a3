"""The grammar backend the scheduler talks to (xgrammar underneath).

Life of a constrained request:

1. `attach(req)` (scheduler loop, cheap): picks the grammar key from the sampling params and starts
   compiling it on a worker thread (or reuses the cached/in-flight compile); `req.grammar` becomes a
   `Grammar` that is not ready yet. The scheduler parks the request in its grammar queue.
2. `poll(queue)` (scheduler loop, each iteration while the queue is not empty): requests whose
   grammar compiled get a matcher and go to the waiting queue; a grammar that failed to compile
   aborts its request with a 400 naming the problem.
3. Before sampling, `fill_vocab_mask(info)` builds the batch's int32 bitmask `[bs, ceil(V/32)]`
   (unconstrained rows allow everything); the sampler applies it on the logits' device.
4. After sampling, `req.grammar.accept_token(t)` advances the matcher; once the grammar is
   terminated the scheduler finishes the request.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import re
import threading
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..sampling.sampling_batch_info import SamplingBatchInfo
    from ..scheduler.req import Req
    from ..server_args import ServerArgs

logger = logging.getLogger(__name__)

GrammarKey = tuple[str, str]
MAX_CACHED_GRAMMARS = 256
# xgrammar prefixes its C++ errors with "[hh:mm:ss] /path/file.cc:123: "; users need only the message.
_CPP_PREFIX = re.compile(r"^\s*\[[\d:]+\]\s*\S+\.cc:\d+:\s*")


def grammar_key(params: Any) -> GrammarKey | None:
    """(kind, source) of a request's constraint, or None when it has none."""
    for kind in ("json_schema", "regex", "ebnf", "structural_tag"):
        value = getattr(params, kind, None)
        if value is not None:
            return kind, value
    return None


def clean_error(exc: BaseException) -> str:
    text = str(exc).strip()
    text = _CPP_PREFIX.sub("", text)
    return text.replace("Check failed: (error.empty()) is false: ", "").strip()


class Grammar:
    """One request's matcher over a compiled grammar (created when the compile finished)."""

    def __init__(self, key: GrammarKey, future: cf.Future[Any]) -> None:
        self.key = key
        self.future = future
        self.matcher: Any = None
        self.error: str | None = None
        self.finished = False  # the matcher refused a token or reached its end

    @property
    def ready(self) -> bool:
        return self.matcher is not None

    def try_init(self) -> bool:
        """Create the matcher if the compile is done; returns True once it is done (ok or error)."""
        if self.matcher is not None or self.error is not None:
            return True
        if not self.future.done():
            return False
        compiled, error = self.future.result()
        if error is not None:
            self.error = error
        else:
            import xgrammar as xgr

            self.matcher = xgr.GrammarMatcher(compiled)
        return True

    def accept_token(self, token: int) -> None:
        if self.finished or self.matcher is None:
            return
        if not self.matcher.accept_token(token):
            # Only reachable when another mask (e.g. min_new_tokens) overrode the grammar's choice.
            logger.warning("Grammar %s rejected token %d; ending the constrained request.", self.key[0], token)
            self.finished = True

    def is_terminated(self) -> bool:
        return self.finished or (self.matcher is not None and self.matcher.is_terminated())

    def fill_mask(self, bitmask: torch.Tensor, row: int) -> None:
        if self.matcher is not None and not self.is_terminated():
            self.matcher.fill_next_token_bitmask(bitmask, row)


class GrammarBackend:
    """Compiles grammars on worker threads, caches them by (kind, source), fills token bitmasks."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_token_ids: list[int], *,
                 any_whitespace: bool = False, max_workers: int = 2, sync_compile: bool = False) -> None:
        self.tokenizer = tokenizer
        # The model's vocab may be larger than the tokenizer's (padded embeddings): size masks for both.
        self.vocab_size = max(vocab_size, len(tokenizer))
        self.eos_token_ids = list(eos_token_ids)
        self.any_whitespace = any_whitespace
        # With tensor parallelism every rank must admit a request in the same step: compile inline.
        self.sync_compile = sync_compile
        self._pool = cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grammar")
        self._compiler: Any = None
        self._compiler_lock = threading.Lock()
        self._cache: dict[GrammarKey, cf.Future[Any]] = {}

    # ---- scheduler hooks ---------------------------------------------------------------------

    def attach(self, req: Req) -> str | None:
        """Start compiling `req`'s grammar and set `req.grammar`; returns an error message or None."""
        key = grammar_key(req.sampling_params)
        if key is None:
            return None
        future = self._cache.get(key)
        if future is None:
            if self.sync_compile:
                future = cf.Future()
                future.set_result(self._compile(key))
            else:
                future = self._pool.submit(self._compile, key)
            self._remember(key, future)
        grammar = Grammar(key, future)
        req.grammar = grammar
        if future.done():
            grammar.try_init()
        return grammar.error

    def poll(self, queue: list[Req], timeout: float = 0.0) -> tuple[list[Req], list[Req], list[Req]]:
        """Split the grammar queue into (ready, failed, still compiling).

        With `timeout > 0` wait that long for at least one compile to finish (the scheduler passes a
        small timeout only when it has nothing else to run, so it neither spins nor stalls work).
        """
        if timeout > 0:
            pending = {r.grammar.future for r in queue if not r.grammar.future.done()}
            if pending and len(pending) == len(queue):
                cf.wait(pending, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        ready, failed, waiting = [], [], []
        for req in queue:
            if not req.grammar.try_init():
                waiting.append(req)
            elif req.grammar.error is not None:
                failed.append(req)
            else:
                ready.append(req)
        return ready, failed, waiting

    def fill_vocab_mask(self, info: SamplingBatchInfo) -> None:
        """Set `info.vocab_mask` ([bs, ceil(V/32)] int32, bit set = allowed) from the rows' matchers."""
        grammars = info.grammars or []
        words = math.ceil(max(self.vocab_size, info.vocab_size) / 32)
        mask = torch.full((len(grammars), words), -1, dtype=torch.int32)
        for row, grammar in enumerate(grammars):
            if grammar is not None:
                grammar.fill_mask(mask, row)
        info.vocab_mask = mask

    def _remember(self, key: GrammarKey, future: cf.Future[Any]) -> None:
        if len(self._cache) >= MAX_CACHED_GRAMMARS:  # drop the oldest finished compile (dicts keep order)
            old = next((k for k, f in self._cache.items() if f.done()), None)
            if old is not None:
                del self._cache[old]
        self._cache[key] = future

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- compiling ---------------------------------------------------------------------------

    def _get_compiler(self) -> Any:
        with self._compiler_lock:
            if self._compiler is None:
                import xgrammar as xgr

                info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab_size,
                                                          stop_token_ids=self.eos_token_ids or None)
                self._compiler = xgr.GrammarCompiler(info, max_threads=2)
            return self._compiler

    def _compile(self, key: GrammarKey) -> tuple[Any, str | None]:
        """(compiled grammar, None) or (None, message naming the field and the problem)."""
        kind, source = key
        try:
            compiler = self._get_compiler()
            if kind == "json_schema":
                return compiler.compile_json_schema(source, any_whitespace=self.any_whitespace), None
            if kind == "regex":
                return compiler.compile_regex(source), None
            if kind == "ebnf":
                return compiler.compile_grammar(source), None
            return _compile_structural_tag(compiler, source), None
        except Exception as e:  # noqa: BLE001 - any compile failure is the request's fault
            return None, f"Invalid {kind}: {clean_error(e)}"


def _compile_structural_tag(compiler: Any, source: str) -> Any:
    """xgrammar's format, or SGLang's/OpenAI's older one: {"structures": [{begin, schema, end}], "triggers": []}."""
    import json
    import warnings

    import xgrammar as xgr

    spec = json.loads(source)
    if not isinstance(spec, dict) or "structures" not in spec:
        return compiler.compile_structural_tag(source)
    items = [xgr.StructuralTagItem(begin=s["begin"], end=s["end"],
                                   schema=s["schema"] if isinstance(s["schema"], str) else json.dumps(s["schema"]))
             for s in spec["structures"]]
    with warnings.catch_warnings():  # xgrammar marks this older form deprecated; it is still the wire format
        warnings.simplefilter("ignore", DeprecationWarning)
        return compiler.compile_structural_tag(items, list(spec.get("triggers") or []))


def create_grammar_backend(server_args: ServerArgs, tokenizer: Any, vocab_size: int,
                           eos_token_ids: list[int]) -> GrammarBackend | None:
    """The backend named by `--grammar-backend` ("none" disables), or None without a tokenizer."""
    if server_args.grammar_backend == "none" or tokenizer is None:
        return None
    return GrammarBackend(tokenizer, vocab_size, eos_token_ids,
                          any_whitespace=server_args.constrained_json_whitespace_pattern is not None,
                          sync_compile=server_args.tp_size > 1)
