"""Entry point of the scheduler process: `python -m sglang_nb.runtime.scheduler.launch`.

The parent writes one pickled launch spec to our stdin and keeps the pipe open: stdin is the
lifeline, and when it closes (the parent exited, however it died) this process group exits.
"""

from __future__ import annotations

import os
import pickle
import runpy
import signal
import struct
import sys
import threading
from typing import Any


def _lifeline(fd: int) -> None:
    # os.read, not the buffered stdin object: its lock must not be held at interpreter shutdown.
    while os.read(fd, 1 << 16):
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _read_exact(fd: int, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = os.read(fd, size - len(buf))
        if not chunk:
            raise SystemExit("the parent closed the launch pipe")
        buf += chunk
    return buf


def _load_external_models(specs: list[tuple[str, str, str, str | None]]) -> dict[str, type]:
    import importlib

    models: dict[str, type] = {}
    loaded_files: dict[str, Any] = {}
    for name, module, qualname, source in specs:
        namespace: Any
        try:
            if module == "__main__":
                raise ImportError(module)
            namespace = importlib.import_module(module)
        except ImportError:
            if source is None or not os.path.exists(source):
                raise RuntimeError(f"Model class {qualname} for {name} cannot be imported by the scheduler process; "
                                   "define it in a module or a script file.") from None
            if source not in loaded_files:
                # A script's `if __name__ == "__main__":` block must not run again here.
                loaded_files[source] = runpy.run_path(source, run_name="__sglang_nb_model__")
            namespace = loaded_files[source]
        obj: Any = namespace[qualname.split(".")[0]] if isinstance(namespace, dict) else \
            getattr(namespace, qualname.split(".")[0])
        for part in qualname.split(".")[1:]:
            obj = getattr(obj, part)
        models[name] = obj
    return models


def main() -> None:
    # Interrupt in a notebook signals the kernel's whole process group; never let it reach us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd = sys.stdin.fileno()
    (size,) = struct.unpack("!Q", _read_exact(fd, 8))
    spec = pickle.loads(_read_exact(fd, size))
    threading.Thread(target=_lifeline, args=(fd,), daemon=True, name="lifeline").start()
    ready = os.fdopen(spec["ready_fd"], "wb", buffering=0)

    def report(msg: dict[str, Any]) -> None:
        data = pickle.dumps(msg)
        ready.write(struct.pack("!Q", len(data)) + data)

    from .scheduler import run_scheduler_process

    try:
        external = _load_external_models(spec["external_models"])
    except Exception as e:  # noqa: BLE001 - reported to the parent
        report({"status": "error", "message": f"{type(e).__name__}: {e}"})
        return
    run_scheduler_process(spec["server_args"], spec["port_args"], spec["model_dir"], report, external,
                          spec.get("tp_rank", 0))


if __name__ == "__main__":
    main()
