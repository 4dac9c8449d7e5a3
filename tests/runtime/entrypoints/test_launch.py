"""`launch_server` as a CLI and as a function: --api-key, incremental streaming, model registrations
reaching the scheduler, and shutdown by SIGTERM, SIGINT or stdin EOF without orphan processes."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
from http_helpers import ServerProcess, start_server


def _descendants(server: ServerProcess) -> list[psutil.Process]:
    return psutil.Process(server.proc.pid).children(recursive=True)


def _assert_all_gone(procs: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive, f"orphans left behind: {alive}"


def _tiny_with_arch(tiny_llama: str, tmp_path: Path, arch: str) -> str:
    import shutil

    model = tmp_path / arch
    shutil.copytree(tiny_llama, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["architectures"] = [arch]
    (model / "config.json").write_text(json.dumps(cfg))
    return str(model)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    srv = start_server(tmp_path_factory.mktemp("keyed"), "--max-total-tokens", "2048",
                       "--incremental-streaming-output", "--skip-server-warmup", "--reasoning-parser", "deepseek-r1",
                       api_key="sekrit")
    yield srv
    srv.stop(signal.SIGKILL)


def test_api_key(keyed_server: ServerProcess) -> None:
    url = keyed_server.url
    assert httpx.get(url + "/health").status_code == 200
    assert httpx.get(url + "/health_generate").status_code == 200
    body = {"text": "Hi", "sampling_params": {"max_new_tokens": 1}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekrit"}):
        r = httpx.post(url + "/generate", json=body, headers=headers)
        assert r.status_code == 401 and r.json() == {"error": "Unauthorized"}
    assert httpx.get(url + "/metrics").status_code == 401
    assert httpx.get(url + "/get_server_info").status_code == 401
    ok = httpx.post(url + "/generate", json=body, headers=keyed_server.headers(), timeout=120)
    assert ok.status_code == 200
    info = httpx.get(url + "/get_server_info", headers=keyed_server.headers()).json()
    assert "api_key" not in info
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
    client = openai.OpenAI(base_url=url + "/v1", api_key="sekrit", max_retries=0, timeout=120)
    assert client.models.list().data[0].id


def test_incremental_streaming_output(keyed_server: ServerProcess) -> None:
    body = {"text": "Once upon a time", "sampling_params": {"temperature": 0, "max_new_tokens": 6}}
    full = httpx.post(keyed_server.url + "/generate", json=body, headers=keyed_server.headers(), timeout=120).json()
    deltas, ids = [], []
    with httpx.stream("POST", keyed_server.url + "/generate", json={**body, "stream": True},
                      headers=keyed_server.headers(), timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                deltas.append(chunk["text"])
                ids += chunk["output_ids"]
    assert len(deltas) >= 2
    assert "".join(deltas) == full["text"] and ids == full["output_ids"]


def test_reasoning_parser(keyed_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key="sekrit", max_retries=0, timeout=120)
    args: dict[str, Any] = dict(model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
    plain = client.chat.completions.create(**args, extra_body={"separate_reasoning": False}).choices[0].message
    split = client.chat.completions.create(**args).choices[0].message
    # deepseek-r1 answers start inside the reasoning; without </think> everything is reasoning.
    assert split.content is None and split.model_extra["reasoning_content"] == plain.content


def test_sigterm_leaves_no_orphans(keyed_server: ServerProcess) -> None:
    procs = [psutil.Process(keyed_server.proc.pid), *_descendants(keyed_server)]
    assert len(procs) >= 2  # the server and its scheduler process
    assert keyed_server.stop(signal.SIGTERM) == 0
    _assert_all_gone(procs)
    assert "Traceback" not in keyed_server.log()


SCRIPT = textwrap.dedent('''
    """Serve a model class registered in this process through launch_server(server_args)."""
    import sys

    from sglang_nb.runtime.models.llama import LlamaForCausalLM
    from sglang_nb.runtime.models.registry import ModelRegistry


    class ServedViaRegistryForCausalLM(LlamaForCausalLM):
        pass


    if __name__ == "__main__":
        from sglang_nb.launch_server import launch_server
        from sglang_nb.runtime.server_args import prepare_server_args

        ModelRegistry.models["ServedViaRegistryForCausalLM"] = ServedViaRegistryForCausalLM
        launch_server(prepare_server_args(sys.argv[1:]))
''')


def test_launch_server_function_ships_registered_models_and_stops_on_sigint(tiny_llama: str,
                                                                            tmp_path: Path) -> None:
    model = _tiny_with_arch(tiny_llama, tmp_path, "ServedViaRegistryForCausalLM")
    script = tmp_path / "serve_custom.py"
    script.write_text(SCRIPT)
    srv = start_server(tmp_path, "--model-path", model, "--skip-tokenizer-init", "--max-total-tokens", "1024",
                       script=str(script))
    procs = [psutil.Process(srv.proc.pid), *_descendants(srv)]
    try:
        info = httpx.get(srv.url + "/get_server_info").json()
        assert info["architectures"] == ["ServedViaRegistryForCausalLM"]
        out = httpx.post(srv.url + "/generate", json={"input_ids": [5, 6, 7], "sampling_params": {
            "temperature": 0, "max_new_tokens": 4, "ignore_eos": True}}, timeout=120).json()
        assert len(out["output_ids"]) == 4
        r = httpx.post(srv.url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 400 and "tokenizer" in r.json()["error"]["message"]
    finally:
        code = srv.stop(signal.SIGINT)
    assert code == 0, srv.log()
    _assert_all_gone(procs)


def test_stdin_lifeline(tiny_llama: str, tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--model-path", tiny_llama, "--skip-tokenizer-init", "--max-total-tokens", "1024",
                       "--skip-server-warmup", "--stdin-lifeline", stdin_pipe=True)
    procs = [psutil.Process(srv.proc.pid), *_descendants(srv)]
    assert srv.proc.stdin is not None
    srv.proc.stdin.close()
    assert srv.proc.wait(timeout=60) == 0
    _assert_all_gone(procs)


@pytest.mark.parametrize(("flags", "needle"), [
    (["--chat-template", "no-such-template"], "--chat-template"),
    (["--tool-call-parser", "nope"], "--tool-call-parser"),
    (["--tp-size", "0"], "--tp-size"),
])
def test_bad_flags_fail_fast(flags: list[str], needle: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "sglang_nb.launch_server", *flags], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and needle in proc.stderr
