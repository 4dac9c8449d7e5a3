"""Process groups for tensor parallelism (NCCL on GPU, gloo on CPU)."""

from .parallel_state import get_tp_group, tensor_model_parallel_all_gather, tensor_model_parallel_all_reduce

__all__ = ["get_tp_group", "tensor_model_parallel_all_gather", "tensor_model_parallel_all_reduce"]
