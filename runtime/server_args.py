"""ServerArgs: every engine and server option in one dataclass; the CLI is generated from it.

Flag names follow SGLang (`--model-path`, `--tp-size`, ...); older spellings are accepted as
aliases (`--tp`, `--nccl-init-addr`, `--enable-overlap-scheduler`, ...). Values that cannot work
together are rejected by `check()` with a message naming the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field, fields
from typing import Any, get_args, get_origin

logger = logging.getLogger(__name__)

DTYPE_CHOICES = ["auto", "half", "float16", "bfloat16", "float", "float32"]
LOAD_FORMAT_CHOICES = ["auto", "pt", "safetensors", "npcache", "dummy", "gguf"]


def _opt(help: str, default: Any = None, *, aliases: tuple[str, ...] = (), choices: list[Any] | None = None,
         cli: bool = True) -> Any:
    """A dataclass field carrying its CLI metadata."""
    meta = {"help": help, "aliases": aliases, "choices": choices, "cli": cli}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ServerArgs:
    # Model and tokenizer
    model_path: str | None = _opt("Model: a Hugging Face directory, a .gguf file, or a hub name in the local "
                                  "cache. Omitted: the embedded SmolLM2-135M-Instruct.", aliases=("--model",))
    tokenizer_path: str | None = _opt("Tokenizer path (defaults to the model path).")
    tokenizer_mode: str = _opt("Tokenizer mode.", "auto", choices=["auto", "slow"])
    skip_tokenizer_init: bool = _opt("Do not load a tokenizer; requests must send input_ids.", False)
    load_format: str = _opt("Weight format.", "auto", choices=LOAD_FORMAT_CHOICES)
    trust_remote_code: bool = _opt("Allow custom model code from the model directory.", False)
    dtype: str = _opt("Weight and activation dtype (auto: bfloat16 on GPU for 32-bit checkpoints, float32 on CPU).",
                      "auto", choices=DTYPE_CHOICES)
    kv_cache_dtype: str = _opt("KV cache dtype.", "auto", choices=["auto", "fp8_e5m2", "fp8_e4m3", "bfloat16", "float32"])
    quantization: str | None = _opt("Quantization method (gguf is set automatically for .gguf files).")
    context_length: int | None = _opt("Maximum context length (default: from the model config).")
    device: str | None = _opt("Device: cpu or cuda (default: cuda when available).", choices=["cpu", "cuda"])
    served_model_name: str | None = _opt("Model name reported by the API (default: the model path).")
    chat_template: str | None = _opt("Chat template: a built-in name or a .jinja/.json file.")
    completion_template: str | None = _opt("Completion template name for code completion.")
    is_embedding: bool = _opt("Serve the model as an embedding model.", False)
    revision: str | None = _opt("Model revision (hub names only).")
    json_model_override_args: str = _opt("JSON merged into the model config.", "{}")

    # HTTP
    host: str = _opt("Host to bind.", "127.0.0.1")
    port: int = _opt("Port to bind.", 30000)
    api_key: str | None = _opt("Require `Authorization: Bearer KEY` on every route but /health.")
    file_storage_pth: str = _opt("Where /v1/files keeps uploads.", "sglang_storage", aliases=("--file-storage-path",))
    enable_cache_report: bool = _opt("Report cached tokens in OpenAI usage.", False)
    skip_server_warmup: bool = _opt("Skip the warm-up request after start-up.", False)
    max_request_body_bytes: int = _opt("Largest accepted HTTP request body in bytes.", 64 * 1024 * 1024)

    # Memory and scheduling
    mem_fraction_static: float | None = _opt("Fraction of device memory for weights and KV pool (GPU); "
                                             "fraction of RAM for the KV pool (CPU).")
    max_running_requests: int | None = _opt("Maximum number of requests running at once.")
    max_total_tokens: int | None = _opt("KV pool size in tokens (default: from memory).")
    chunked_prefill_size: int | None = _opt("Maximum tokens per prefill chunk; -1 disables chunking.")
    max_prefill_tokens: int = _opt("Token budget of one prefill batch.", 16384)
    schedule_policy: str = _opt("Order of the waiting queue.", "lpm", choices=["lpm", "fcfs", "dfs-weight", "random", "lof"])
    schedule_conservativeness: float = _opt("Larger is more conservative admission.", 1.0)
    page_size: int = _opt("KV page size in tokens.", 1)
    disable_radix_cache: bool = _opt("Disable the radix prefix cache.", False)

    # Runtime
    tp_size: int = _opt("Tensor parallel size.", 1, aliases=("--tp", "--tensor-parallel-size"))
    dp_size: int = _opt("Data parallel size.", 1, aliases=("--dp", "--data-parallel-size"))
    load_balance_method: str = _opt("Data parallel dispatch.", "round_robin", choices=["round_robin", "shortest_queue"])
    stream_interval: int = _opt("Stream every N decode steps.", 1)
    incremental_streaming_output: bool = _opt("Stream deltas instead of cumulative text.", False,
                                              aliases=("--stream-output",))
    random_seed: int | None = _opt("Random seed.")
    watchdog_timeout: float = _opt("Abort the server if one batch takes longer (seconds).", 300.0)
    download_dir: str | None = _opt("Hugging Face cache directory.")
    base_gpu_id: int = _opt("First GPU id to use.", 0)
    dist_init_addr: str | None = _opt("host:port for multi-node initialisation.", aliases=("--nccl-init-addr", "--nccl-init"))
    nnodes: int = _opt("Number of nodes.", 1)
    node_rank: int = _opt("This node's rank.", 0)
    constrained_json_whitespace_pattern: str | None = _opt("Whitespace regex for JSON constrained decoding.")

    # Logging and metrics
    log_level: str = _opt("Log level.", "info", choices=["debug", "info", "warning", "error", "critical"])
    log_level_http: str | None = _opt("HTTP log level (default: --log-level).")
    log_requests: bool = _opt("Log every request.", False)
    show_time_cost: bool = _opt("Log time spent in each step.", False)
    enable_metrics: bool = _opt("Expose Prometheus metrics at /metrics (always on here; accepted).", False)
    decode_log_interval: int = _opt("Log decode statistics every N steps.", 40)

    # Kernels and optimisation
    attention_backend: str | None = _opt("Attention backend.", choices=["torch_native", "triton", "flashinfer"])
    sampling_backend: str | None = _opt("Sampling backend.", choices=["pytorch", "flashinfer"])
    grammar_backend: str = _opt("Grammar backend for constrained decoding.", "xgrammar", choices=["xgrammar", "none"])
    disable_jump_forward: bool = _opt("Disable jump-forward decoding.", False, aliases=("--disable-regex-jump-forward",))
    disable_cuda_graph: bool = _opt("Disable CUDA graphs.", False)
    disable_cuda_graph_padding: bool = _opt("Disable padding to captured batch sizes.", False)
    cuda_graph_max_bs: int | None = _opt("Largest batch size captured in a CUDA graph.")
    cuda_graph_bs: list[int] | None = _opt("Batch sizes captured in CUDA graphs.")
    disable_overlap_schedule: bool = _opt("Disable the overlap scheduler.", False)
    enable_overlap_schedule: bool = _opt("Deprecated: overlap scheduling is on by default.", False,
                                         aliases=("--enable-overlap-scheduler",))
    enable_mixed_chunk: bool = _opt("Run decodes together with a prefill chunk.", False)
    enable_torch_compile: bool = _opt("torch.compile the model for small batch sizes.", False)
    torch_compile_max_bs: int = _opt("Largest batch size compiled.", 32, aliases=("--max-torch-compile-bs",))
    torchao_config: str = _opt("torchao quantization config.", "")
    enable_nan_detection: bool = _opt("Check logits for NaN.", False)
    enable_p2p_check: bool = _opt("Check GPU peer access.", False)
    disable_custom_all_reduce: bool = _opt("Use NCCL all-reduce only.", False)
    disable_outlines_disk_cache: bool = _opt("Accepted for compatibility.", False, aliases=("--disable-disk-cache",))
    disable_mla: bool = _opt("Disable multi-head latent attention.", False)
    enable_dp_attention: bool = _opt("Data-parallel attention.", False)
    triton_attention_reduce_in_fp32: bool = _opt("Reduce Triton attention in fp32.", False)
    triton_attention_num_kv_splits: int = _opt("Splits of split-k decode attention.", 8)
    num_continuous_decode_steps: int = _opt("Decode steps per scheduling round.", 1)
    delete_ckpt_after_loading: bool = _opt("Delete the checkpoint after loading.", False)
    enable_custom_logit_processor: bool = _opt("Allow custom logit processors in requests.", False)
    enable_return_hidden_states: bool = _opt("Allow return_hidden_states.", False)
    allow_auto_truncate: bool = _opt("Truncate prompts longer than the context instead of rejecting them.", False)
    tool_call_parser: str | None = _opt("Tool-call parser for the OpenAI API.")
    reasoning_parser: str | None = _opt("Reasoning parser for the OpenAI API.")
    lora_paths: list[str] | None = _opt("LoRA adapters (name=path).")
    max_loras_per_batch: int = _opt("LoRA adapters per batch.", 8)

    def __post_init__(self) -> None:
        if self.enable_overlap_schedule:
            logger.warning("--enable-overlap-schedule is deprecated: overlap scheduling is on by default.")
        if self.tokenizer_path is None and self.model_path is not None:
            self.tokenizer_path = self.model_path

    # ---- CLI ---------------------------------------------------------------------------------

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        """Add one flag per field (dashes for underscores) with its aliases."""
        for f in fields(ServerArgs):
            meta = f.metadata
            if not meta.get("cli", True):
                continue
            names = ["--" + f.name.replace("_", "-"), *meta.get("aliases", ())]
            kind = _base_type(f.type)
            kwargs: dict[str, Any] = {"dest": f.name, "help": meta.get("help", "")}
            if kind is bool:
                parser.add_argument(*names, action="store_true", **kwargs)
                continue
            if kind is list:
                kwargs["nargs"] = "+"
                kwargs["type"] = int if "int" in str(f.type) else str
            else:
                kwargs["type"] = kind
            if meta.get("choices"):
                kwargs["choices"] = meta["choices"]
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
            kwargs["default"] = default
            parser.add_argument(*names, **kwargs)

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> ServerArgs:
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**values)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ServerArgs:
        """Build from keyword arguments, naming any unknown key in a ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"Unknown server argument(s): {', '.join(unknown)}.")
        return cls(**kwargs)

    # ---- validation --------------------------------------------------------------------------

    def check(self) -> None:
        """Reject values that cannot work, naming the flag. Called once at start-up."""
        def bad(flag: str, msg: str) -> None:
            raise ValueError(f"--{flag}: {msg}")

        if self.tp_size < 1:
            bad("tp-size", f"must be at least 1, got {self.tp_size}.")
        if self.dp_size < 1:
            bad("dp-size", f"must be at least 1, got {self.dp_size}.")
        if self.nnodes < 1 or not 0 <= self.node_rank < self.nnodes:
            bad("node-rank", f"must be in [0, nnodes={self.nnodes}), got {self.node_rank}.")
        if self.tp_size % self.nnodes != 0:
            bad("tp-size", "tp_size must be divisible by number of nodes")
        if self.mem_fraction_static is not None and not 0.0 < self.mem_fraction_static < 1.0:
            bad("mem-fraction-static", f"must be in (0, 1), got {self.mem_fraction_static}.")
        for name in ("max_running_requests", "max_total_tokens", "context_length"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                bad(name.replace("_", "-"), f"must be positive, got {value}.")
        if self.max_prefill_tokens <= 0:
            bad("max-prefill-tokens", f"must be positive, got {self.max_prefill_tokens}.")
        if self.chunked_prefill_size is not None and self.chunked_prefill_size == 0:
            bad("chunked-prefill-size", "must be positive, or -1 to disable chunking.")
        if self.page_size != 1:
            bad("page-size", "only page size 1 is supported.")
        if self.stream_interval < 1:
            bad("stream-interval", f"must be at least 1, got {self.stream_interval}.")
        if not 0 <= self.port < 65536:  # 0: the OS picks a free port (launch_server reports it)
            bad("port", f"must be in 0..65535, got {self.port}.")
        if self.schedule_conservativeness <= 0:
            bad("schedule-conservativeness", f"must be positive, got {self.schedule_conservativeness}.")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                bad("device", "cuda was requested but no CUDA device is available.")
        if self.device == "cpu" and self.attention_backend in ("triton", "flashinfer"):
            bad("attention-backend", f"{self.attention_backend} needs a CUDA device; use torch_native on CPU.")
        if self.load_format == "gguf" and self.model_path and not self.model_path.endswith(".gguf") \
                and not os.path.isdir(self.model_path):
            bad("load-format", f"gguf needs a .gguf file, got {self.model_path!r}.")
        try:
            overrides = json.loads(self.json_model_override_args)
        except json.JSONDecodeError as e:
            bad("json-model-override-args", f"not valid JSON ({e}).")
        else:
            if not isinstance(overrides, dict):
                bad("json-model-override-args", "must be a JSON object.")
        if self.dp_size > 1 and self.nnodes > 1:
            bad("dp-size", "multi-node data parallel is not supported")
        if self.lora_paths:
            bad("lora-paths", "LoRA adapters are not supported by this server yet.")
        if self.quantization not in (None, "gguf"):
            bad("quantization", f"{self.quantization!r} is not supported; supported: gguf.")
        if self.kv_cache_dtype.startswith("fp8"):
            bad("kv-cache-dtype", "fp8 KV cache is not supported yet.")

    # ---- derived values ----------------------------------------------------------------------

    def resolved_device(self) -> str:
        if self.device is not None:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def schedule_policy_effective(self) -> str:
        # A cache-aware policy means nothing without the cache (SGLang switches to fcfs too).
        if self.disable_radix_cache and self.schedule_policy in ("lpm", "dfs-weight"):
            return "fcfs"
        return self.schedule_policy

    def model_override_args(self) -> dict[str, Any]:
        return dict(json.loads(self.json_model_override_args))


def _base_type(tp: Any) -> Any:
    """Map a (string) annotation such as 'int | None' to the callable argparse needs."""
    if isinstance(tp, str):
        head = tp.replace(" ", "").split("|")[0]
        if head.startswith("list"):
            return list
        return {"str": str, "int": int, "float": float, "bool": bool}.get(head, str)
    origin = get_origin(tp)
    if origin is list:
        return list
    args = [a for a in get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def prepare_server_args(argv: list[str] | None = None) -> ServerArgs:
    """Parse a command line into ServerArgs (used by launch_server and the benchmarks)."""
    parser = argparse.ArgumentParser(description="sglang_nb server")
    ServerArgs.add_cli_args(parser)
    args = parser.parse_args(argv)
    return ServerArgs.from_cli_args(args)


@dataclass
class PortArgs:
    """IPC endpoints between the front process and the scheduler."""

    scheduler_input_ipc: str
    tokenizer_input_ipc: str

    @staticmethod
    def init_new() -> PortArgs:
        import tempfile

        base = tempfile.mkdtemp(prefix="sglang_nb_ipc_")
        return PortArgs(scheduler_input_ipc=f"ipc://{base}/scheduler", tokenizer_input_ipc=f"ipc://{base}/tokenizer")
