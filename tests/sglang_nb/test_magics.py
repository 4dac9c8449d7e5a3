"""%sgl / %%sgl on a bare IPython InteractiveShell against the shared embedded runtime."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError


def test_start_attaches_to_the_shared_runtime_and_status(ip: Any, shared_rt: Any, capsys: Any) -> None:
    ip.run_line_magic("sgl", "start")
    assert "shared by the Jupyter server" in capsys.readouterr().out
    ip.run_line_magic("sgl", "status")
    out = capsys.readouterr().out
    assert shared_rt.url in out and "healthy" in out and "shared" in out


def test_prompt_cell_streams_footer_and_output_variable(ip: Any, capsys: Any) -> None:
    ip.user_ns["city"] = "Paris"
    assert ip.run_cell_magic("sgl", "--max-tokens 6 -o answer", "In which country is {city}?") is None
    out = capsys.readouterr().out
    text = ip.user_ns["answer"]
    assert text and text in out  # streamed once, not repeated
    assert out.count(text) == 1
    assert "prompt tokens served from cache" in out
    # The same chat prefix again: the system prompt and the question come from the cache.
    ip.run_cell_magic("sgl", "--max-tokens 2", "In which country is {city}?")
    footer = capsys.readouterr().out.strip().splitlines()[-1]
    cached, total = footer.split(" prompt tokens")[0].split(" of ")
    assert int(cached) > 0 and int(cached) < int(total)


def test_no_interpolate_raw_choices_and_json_schema(ip: Any) -> None:
    ip.run_cell_magic("sgl", "--raw --no-interpolate --max-tokens 3 -o raw", "Braces {city} stay:")
    assert isinstance(ip.user_ns["raw"], str)
    ip.run_cell_magic("sgl", "--max-tokens 4 --choices yes,no -o yn", "Is water wet? Answer yes or no.")
    assert ip.user_ns["yn"] in ("yes", "no")
    ip.user_ns["schema"] = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    ip.run_cell_magic("sgl", "--max-tokens 24 --json-schema schema -o js", "Give a JSON object with a number n.")
    import json

    assert isinstance(json.loads(ip.user_ns["js"])["n"], int)


def test_program_mode_runs_forks_and_keeps_the_state(ip: Any, capsys: Any) -> None:
    body = 's += "Colours:"\nf = s.fork(2)\nfor b in f:\n    b += sgl.gen("c", max_tokens=3)\nf.join()'
    ip.run_cell_magic("sgl", "--program --max-tokens 3 -o state", body)
    state = ip.user_ns["state"]
    tree = state.request_tree()
    assert len(tree.requests()) >= 2
    out = capsys.readouterr().out
    assert "--- fork 0 ---" in out and "--- fork 1 ---" in out and "served from cache" in out
    from sglang_nb.widgets.cache_inspector import last_request_tree

    assert last_request_tree() is not None


@pytest.mark.parametrize(("cell", "message"), [
    ("%%sgl --max-tokens 0\nhi", "--max-tokens must be at least 1"),
    ("%%sgl --regex a --choices a,b\nhi", "one constraint"),
    ("%%sgl --nope\nhi", "unrecognized arguments"),
    ("%%sgl\n   ", "The cell is empty"),
    ("%%sgl --program\ns +=", "does not compile"),
    ("%sgl abort", "%sgl abort --all"),
    ("%sgl start --server-arg oops", "KEY=VALUE"),
    ("%sgl bogus", "invalid choice"),
])
def test_user_mistakes_are_usage_errors(ip: Any, cell: str, message: str) -> None:
    result = ip.run_cell(cell)
    assert isinstance(result.error_in_exec, UsageError)
    assert message in str(result.error_in_exec)


def test_no_runtime_says_how_to_start_one(ip: Any, monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.setenv("SGLANG_NB_REGISTRY_DIR", str(tmp_path))  # no shared runtime visible
    result = ip.run_cell("%%sgl\nhello")
    assert isinstance(result.error_in_exec, UsageError) and "%sgl start" in str(result.error_in_exec)


def test_help_logs_cache_flush_abort_stop(ip: Any, capsys: Any) -> None:
    from IPython.core.magic_arguments import parse_argstring  # noqa: F401 - the parser the help comes from

    magics = ip.magics_manager.registry["SglMagics"]
    assert "--max-tokens" in magics.sgl_cell.__doc__ and "--choices" in magics.sgl_cell.__doc__
    assert "start" in magics.sgl.__doc__ and "--model" in magics.sgl.__doc__
    ip.run_line_magic("sgl", "logs -n 5")
    widget = ip.run_line_magic("sgl", "cache --interval 0 --max-nodes 5")
    assert widget.kpis["pool_tokens"] > 0
    widget.close()
    ip.run_line_magic("sgl", "flush")
    assert "Cache flushed." in capsys.readouterr().out
    ip.run_line_magic("sgl", "abort --all")
    ip.run_line_magic("sgl", "stop")
    assert "Detached" in capsys.readouterr().out


def test_config_traits_and_unload(ip: Any) -> None:
    ip.run_line_magic("config", "SglMagics.max_tokens = 3")
    magics = ip.magics_manager.registry["SglMagics"]
    assert magics.max_tokens == 3
    ip.extension_manager.unload_extension("sglang_nb")
    assert "sgl" not in ip.magics_manager.magics["cell"]
    ip.extension_manager.load_extension("sglang_nb")
