"""`%sgl` and `%%sgl`: run a model from a notebook.

`%load_ext sglang_nb`, then `%sgl start` (the embedded model, or `--model PATH`), `%%sgl` cells
(a prompt, or with `--program` an `@function` body), and `%sgl status|logs|cache|flush|abort|stop`.
`%sgl?` and `%%sgl?` list every option. User mistakes raise `UsageError` (one line, no traceback)
that says how to fix them. Settings: `%config SglMagics.max_tokens = 256` and friends.
"""

from __future__ import annotations

import contextlib
import shlex
import time
import uuid
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, argument_group, magic_arguments, parse_argstring
from traitlets import Float, Int, Unicode

from . import _cell
from ._display import (
    StreamView,
    branch_texts,
    footer_line,
    in_kernel,
    program_bundle,
    provenance,
    tree_footer,
)
from ._runtime import Runtime, RuntimeStartError, current_runtime, set_current_runtime, shared_runtime

NO_RUNTIME = "No runtime is running: start one with `%sgl start` (or `%sgl start --model PATH`)."


def remember_requests(tree: Any) -> None:
    """Keep the last cell's request tree for the cache inspector's overlay."""
    from .widgets import cache_inspector

    cache_inspector.set_last_request_tree(tree)


@magics_class
class SglMagics(Magics):
    """The `%sgl` line magic and the `%%sgl` cell magic."""

    max_tokens = Int(128, help="Default --max-tokens of %%sgl cells.").tag(config=True)
    temperature = Float(0.0, help="Default --temperature of %%sgl cells (0 = greedy).").tag(config=True)
    update_interval = Float(0.1, help="Seconds between two updates of a streaming output.").tag(config=True)
    launch_timeout = Float(300.0, help="Seconds `%sgl start` waits for the model to load.").tag(config=True)
    default_model = Unicode("", help="Model `%sgl start` serves when none is named (empty: embedded).").tag(
        config=True)

    # ---- %sgl ------------------------------------------------------------------------------------

    @magic_arguments()
    @argument("command", choices=["start", "stop", "status", "logs", "cache", "flush", "abort"],
              help="start: launch a runtime; stop; status; logs: its log tail; cache: the cache inspector; "
                   "flush: empty the radix cache; abort: stop a request (rid) or all (--all).")
    @argument("rid", nargs="?", default=None, help="abort: the request id to abort.")
    @argument_group("start")
    @argument("--model", "--model-path", dest="model", default=None, help="Model path or name (default: embedded).")
    @argument("--context-length", type=int, default=None, help="Maximum context length.")
    @argument("--max-total-tokens", type=int, default=None, help="KV cache size in tokens.")
    @argument("--mem-fraction-static", type=float, default=None, help="Fraction of memory for weights and KV.")
    @argument("--server-arg", action="append", default=[], metavar="KEY=VALUE",
              help="Any other launch_server option, e.g. --server-arg schedule_policy=fcfs (repeatable).")
    @argument("--own", action="store_true", help="Start a runtime for this kernel even if the Jupyter server "
                                                 "shares one.")
    @argument_group("logs, cache, abort")
    @argument("-n", "--lines", type=int, default=40, help="logs: how many lines.")
    @argument("--max-nodes", type=int, default=200, help="cache: radix-tree nodes to show.")
    @argument("--interval", type=float, default=1.0, help="cache: seconds between refreshes (0: no refresh).")
    @argument("--all", action="store_true", help="abort: every request of the runtime.")
    @line_magic
    def sgl(self, line: str) -> Any:
        """Manage this kernel's sglang_nb runtime."""
        args = self._parse(self.sgl, line)
        return getattr(self, f"_cmd_{args.command}")(args)

    def _cmd_start(self, args: Any) -> None:
        rt = current_runtime()
        if rt is not None:
            raise UsageError(f"A runtime is already running at {rt.url} ({rt.model}); `%sgl stop` it first.")
        kwargs = _server_kwargs(args)
        model = args.model or self.default_model or None
        if model is None and not kwargs and not args.own:
            shared = shared_runtime()
            if shared is not None:
                set_current_runtime(shared)
                print(f"Using the runtime shared by the Jupyter server: {shared.url} ({shared.model})")
                return
        view = _ProgressLine()
        try:
            rt = Runtime(model, launch_timeout=self.launch_timeout, progress=view.show, **kwargs)
        except (RuntimeStartError, ValueError) as e:
            view.show(f"Runtime failed to start: {str(e).splitlines()[0]}")
            raise UsageError(f"{e}\nFix the options above, or see `%sgl start?`.") from None
        set_current_runtime(rt)
        rt.warm_endpoint()

    def _cmd_stop(self, args: Any) -> None:
        rt = current_runtime()
        if rt is None:
            print("No runtime is running.")
            return
        rt.stop()
        set_current_runtime(None)
        print("Runtime stopped." if rt.owned else "Detached from the shared runtime (it keeps running).")

    def _cmd_status(self, args: Any) -> None:
        from ._registry import load_records

        rt = current_runtime()
        if rt is None:
            print("No runtime for this kernel (`%sgl start` launches one).")
        else:
            info = rt.status()
            lines = [f"runtime {info['id']}: {info['model']} at {info['url']} (pid {info['pid']}, "
                     f"{'healthy' if info['healthy'] else 'NOT healthy'}, {'owned' if rt.owned else 'shared'}"
                     f", up {info.get('uptime_s', 0):.0f} s)"]
            with contextlib.suppress(Exception):
                s = rt.cache_state()
                lines.append(f"requests: {s['num_running_reqs']} running, {s['num_waiting_reqs']} queued; "
                             f"KV: {s['used_kv_tokens']}/{s['max_total_num_tokens']} tokens, "
                             f"cache hit rate {s['cache_hit_rate']:.0%}")
            print("\n".join(lines))
        others = [r for r in load_records() if rt is None or r.id != rt.id]
        for r in others:
            print(f"also registered: {r.id} {r.model} at {r.url} (owner: {r.owner_kind} {r.owner_pid})")

    def _cmd_logs(self, args: Any) -> None:
        print(self._runtime().log_tail(args.lines) or "(the log is empty)")

    def _cmd_cache(self, args: Any) -> Any:
        from .widgets import CacheInspector

        if args.max_nodes < 1:
            raise UsageError("--max-nodes must be at least 1.")
        return CacheInspector(self._runtime(), max_nodes=args.max_nodes, interval=args.interval)

    def _cmd_flush(self, args: Any) -> None:
        try:
            self._runtime().flush_cache()
        except ValueError as e:
            raise UsageError(str(e)) from None
        print("Cache flushed.")

    def _cmd_abort(self, args: Any) -> None:
        if not args.rid and not args.all:
            raise UsageError("Name the request: `%sgl abort RID`, or abort everything with `%sgl abort --all`.")
        self._runtime().abort(None if args.all else args.rid)
        print("Aborted " + ("every request." if args.all else f"request {args.rid}."))

    # ---- %%sgl -----------------------------------------------------------------------------------

    @magic_arguments()
    @argument("--max-tokens", type=int, default=None, help="Tokens to generate at most (default 128).")
    @argument("--temperature", type=float, default=None, help="Sampling temperature (default 0: greedy).")
    @argument("--top-p", type=float, default=None, help="Nucleus sampling probability mass.")
    @argument("--seed", type=int, default=None, help="Sampling seed.")
    @argument("--stop", action="append", default=None, help="Stop string (repeatable).")
    @argument("--ignore-eos", action="store_true", help="Keep generating past the end-of-sequence token.")
    @argument("--regex", default=None, help="Constrain the output to this regular expression.")
    @argument("--json-schema", default=None, metavar="VAR_OR_JSON",
              help="Constrain the output to a JSON schema: a variable (dict or pydantic model) or inline JSON.")
    @argument("--choices", default=None, help="Constrain the output to one of these comma-separated options.")
    @argument("--raw", action="store_true", help="Send the text as is (default: as a chat user turn).")
    @argument("--system", default=None, help="System prompt for chat mode.")
    @argument("--no-interpolate", action="store_true", help="Keep {name} literally instead of substituting.")
    @argument("--program", action="store_true", help="The cell is an @function body using `s` (gen/select/fork).")
    @argument("-o", "--output", default=None, metavar="VAR",
              help="Store the text (or, with --program, the ProgramState) in this variable.")
    @no_var_expand
    @cell_magic("sgl")  # type: ignore[arg-type]  # IPython types the factory's result as a union, not an overload
    def sgl_cell(self, line: str, cell: str) -> None:
        """Generate from the cell: a prompt (with {var} substitution), or a program with --program."""
        args = self._parse(self.sgl_cell, line)
        rt = self._runtime()
        ns = self.shell.user_ns if self.shell is not None else {}
        try:
            schema = _cell.json_schema_arg(args.json_schema, ns) if args.json_schema else None
            choices = [c.strip() for c in args.choices.split(",")] if args.choices is not None else None
            params = _cell.sampling_params(
                max_tokens=self.max_tokens if args.max_tokens is None else args.max_tokens,
                temperature=self.temperature if args.temperature is None else args.temperature,
                top_p=args.top_p, stop=args.stop, regex=args.regex, json_schema=schema, choices=choices,
                ignore_eos=args.ignore_eos, seed=args.seed)
            if args.program:
                return self._run_program(rt, cell, ns, params, args.output)
            text = cell if args.no_interpolate else _cell.interpolate(cell, ns)
            if not text.strip():
                raise _cell.CellError("The cell is empty: write the prompt below the %%sgl line.")
            # Chat prompts are rendered by the runtime's template: no tokenizer is loaded in the kernel.
            body: dict[str, Any] = {"text": text} if args.raw else {
                "input_ids": rt.chat_input_ids(text.strip(), args.system)}
        except (_cell.CellError, ValueError) as e:
            raise UsageError(str(e)) from None
        return self._run_prompt(rt, body, text, params, args.output)

    def _run_prompt(self, rt: Runtime, body: dict[str, Any], prompt: str, params: dict[str, Any],
                    output: str | None) -> None:
        rid = f"sgl-{uuid.uuid4().hex}"
        view = StreamView(interval=self.update_interval)
        text, last = "", None
        t0 = time.perf_counter()
        try:
            for chunk in rt.stream_generate({**body, "sampling_params": params, "rid": rid}):
                last, text = chunk, chunk["text"]
                view.update(text)
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                rt.abort(rid)
            view.finish(text + " [interrupted]", "interrupted: the request was aborted; the runtime keeps running",
                        {"sglang_nb": {"model": rt.model, "rid": rid, "interrupted": True}})
            raise
        except ValueError as e:
            raise UsageError(f"The runtime refused the request: {e}") from None
        meta = provenance(rt.model, last or {"meta_info": {"id": rid}}, time.perf_counter() - t0, params)
        view.finish(text, footer_line(meta), {"sglang_nb": meta})
        self._remember_prompt(prompt, text, meta)
        if output:
            assert self.shell is not None  # magics are registered on a shell (load_ipython_extension)
            self.shell.user_ns[output] = text

    @staticmethod
    def _remember_prompt(prompt: str, text: str, meta: dict[str, Any]) -> None:
        from sglang_nb.lang.tree import RequestLog, RequestTree

        log = RequestLog()
        log.add("stream", prompt, {"id": meta["rid"], **meta}, output=text)
        remember_requests(RequestTree.from_records(log.snapshot()))

    def _run_program(self, rt: Runtime, body: str, ns: dict[str, Any], params: dict[str, Any],
                     output: str | None) -> None:
        program = _cell.compile_program(body, ns)
        kwargs = {"max_new_tokens": params.pop("max_new_tokens"), "temperature": params.pop("temperature")}
        if params.get("stop"):
            kwargs["stop"] = params.pop("stop")
        state = program.run(stream=True, backend=rt, **kwargs)
        executor = state.stream_executor
        view = StreamView(interval=self.update_interval)
        try:
            while not _program_finished(executor):
                if view.kernel:
                    view.update_bundle(program_bundle(branch_texts(executor), "…"))
                time.sleep(self.update_interval)
        except KeyboardInterrupt:
            _stop_program(rt)
            view.finish_bundle(program_bundle(branch_texts(executor), "interrupted: the program's requests were "
                                              "aborted; the runtime keeps running"), {})
            raise
        records = executor.ctx.log.snapshot()
        footer, meta = tree_footer(records, rt.model)
        if executor.error_ is not None:
            view.finish_bundle(program_bundle(branch_texts(executor), f"error: {executor.error_}"), {})
            raise UsageError(f"The program failed: {executor.error_}")
        view.finish_bundle(program_bundle(branch_texts(executor), footer), {"sglang_nb": meta})
        from sglang_nb.lang.tree import RequestTree

        remember_requests(RequestTree.from_records(records))
        if output:
            assert self.shell is not None  # magics are registered on a shell (load_ipython_extension)
            self.shell.user_ns[output] = state

    # ---- helpers ---------------------------------------------------------------------------------

    def _parse(self, func: Any, line: str) -> Any:
        try:
            return parse_argstring(func, line)
        except UsageError:
            raise
        except (ValueError, SystemExit) as e:  # shlex errors (an unclosed quote)
            raise UsageError(f"Cannot parse the options: {e}. Quote values with spaces.") from None

    def _runtime(self) -> Runtime:
        rt = current_runtime()
        if rt is None:
            rt = shared_runtime()
            if rt is None:
                raise UsageError(NO_RUNTIME)
            set_current_runtime(rt)
        return rt


def _server_kwargs(args: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {name: getattr(args, name) for name in
                              ("context_length", "max_total_tokens", "mem_fraction_static")
                              if getattr(args, name) is not None}
    for item in args.server_arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--server-arg {item!r}: write KEY=VALUE, e.g. --server-arg schedule_policy=fcfs")
        kwargs[key.strip().lstrip("-").replace("-", "_")] = _literal(value)
    return kwargs


def _literal(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        with contextlib.suppress(ValueError):
            return cast(value)
    return shlex.split(value)[0] if value.startswith(("'", '"')) else value


def _program_finished(executor: Any) -> bool:
    return bool(executor.done.done()) and all(f.done() for f in executor.ctx.done_futures())


def _stop_program(rt: Runtime) -> None:
    """Abort a program's requests: all of them on a runtime of our own, by disconnecting on a shared one."""
    with contextlib.suppress(Exception):
        if rt.owned:
            rt.abort(None)
        endpoint, rt._endpoint = rt._endpoint, None
        if endpoint is not None:
            endpoint.shutdown()  # closing its connections aborts the streams on the server


class _ProgressLine:
    """One line that shows the start-up progress (a display handle in a kernel, `\\r` in a terminal)."""

    def __init__(self) -> None:
        self.kernel = in_kernel()
        self.handle: Any = None

    def show(self, message: str) -> None:
        if not self.kernel:
            end = "\n" if message.startswith(("Runtime ready", "Runtime failed")) else ""
            print("\r" + message[:150], end=end, flush=True)
            return
        bundle = {"text/plain": message}
        if self.handle is None:
            from IPython.display import display

            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)


def load_ipython_extension(ip: Any) -> None:
    """`%load_ext sglang_nb`: register the magics (configurable as `SglMagics`)."""
    magics = SglMagics(shell=ip)
    ip.register_magics(magics)
    if magics not in ip.configurables:
        ip.configurables.append(magics)


def unload_ipython_extension(ip: Any) -> None:
    """`%unload_ext sglang_nb`: remove the magics (IPython has no public way; the tables are edited)."""
    for kind in ("line", "cell"):
        ip.magics_manager.magics[kind].pop("sgl", None)
    ip.configurables[:] = [c for c in ip.configurables if not isinstance(c, SglMagics)]


__all__ = ["SglMagics", "load_ipython_extension", "unload_ipython_extension"]
