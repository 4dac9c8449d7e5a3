"""Backends: in-process Engine, HTTP RuntimeEndpoint (native API), OpenAI-compatible APIs."""
