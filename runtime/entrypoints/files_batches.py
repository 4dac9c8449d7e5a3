"""OpenAI Files and Batches: `/v1/files` (JSONL uploads kept on disk under `--file-storage-pth`)
and `/v1/batches` (each input line runs through the same engine as `/v1/completions` or
`/v1/chat/completions`; results go to an output file, failed lines to an error file).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from tornado.httputil import HTTPFile, parse_body_arguments

from .handler_base import BaseHandler
from .protocol import ApiError, get_dict, get_str

if TYPE_CHECKING:
    from .context import ServerContext

logger = logging.getLogger(__name__)
BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
BATCH_CONCURRENCY = 64


class FileStore:
    """Files on disk (`<id>.data` + `<id>.json` metadata); the folder is created on first upload."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._meta: dict[str, dict[str, Any]] | None = None

    def _index(self) -> dict[str, dict[str, Any]]:
        if self._meta is None:
            self._meta = {}
            if os.path.isdir(self.root):
                for name in sorted(os.listdir(self.root)):
                    if name.endswith(".json"):
                        try:
                            with open(os.path.join(self.root, name), encoding="utf-8") as f:
                                meta = json.load(f)
                            self._meta[meta["id"]] = meta
                        except (OSError, ValueError, KeyError):
                            logger.warning("Skipping unreadable file record %s", name)
        return self._meta

    def create(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        """Store `data` (side effect: writes two files) and return the OpenAI file object."""
        os.makedirs(self.root, exist_ok=True)
        fid = f"file-{uuid.uuid4().hex}"
        meta = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed", "status_details": None}
        with open(self._path(fid, "data"), "wb") as f:
            f.write(data)
        with open(self._path(fid, "json"), "w", encoding="utf-8") as f:
            json.dump(meta, f)
        self._index()[fid] = meta
        return meta

    def _path(self, fid: str, ext: str) -> str:
        return os.path.join(self.root, f"{fid}.{ext}")

    def get(self, fid: str) -> dict[str, Any]:
        meta = self._index().get(fid)
        if meta is None:
            raise ApiError(f"File not found: {fid}", status=404, param="file_id")
        return meta

    def content(self, fid: str) -> bytes:
        self.get(fid)
        with open(self._path(fid, "data"), "rb") as f:
            return f.read()

    def delete(self, fid: str) -> dict[str, Any]:
        self.get(fid)
        for ext in ("data", "json"):
            try:
                os.remove(self._path(fid, ext))
            except FileNotFoundError:
                pass
        del self._index()[fid]
        return {"id": fid, "object": "file", "deleted": True}

    def list(self, purpose: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self._index().values() if purpose is None or m["purpose"] == purpose]


class BatchManager:
    """Batch jobs of one server; each runs as a task on the loop that created it."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.batches: dict[str, dict[str, Any]] = {}
        self._tasks: dict[str, list[asyncio.Task[Any]]] = {}
        self._runners: set[asyncio.Task[Any]] = set()  # asyncio keeps only weak references to tasks

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        file_id = get_str(body, "input_file_id")
        if not file_id:
            raise ApiError("input_file_id is required.", param="input_file_id")
        endpoint = get_str(body, "endpoint")
        if endpoint not in BATCH_ENDPOINTS:
            raise ApiError(f"endpoint must be one of {', '.join(BATCH_ENDPOINTS)}; got {endpoint!r}.", param="endpoint")
        window = get_str(body, "completion_window", "24h")
        if window != "24h":
            raise ApiError(f"completion_window must be '24h', got {window!r}.", param="completion_window")
        metadata = get_dict(body, "metadata")
        try:
            self.ctx.files.get(file_id)
        except ApiError:
            raise ApiError(f"No file with id {file_id!r}.", param="input_file_id") from None
        now = int(time.time())
        bid = f"batch_{uuid.uuid4().hex}"
        batch: dict[str, Any] = {
            "id": bid, "object": "batch", "endpoint": endpoint, "errors": None, "input_file_id": file_id,
            "completion_window": window, "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": now, "in_progress_at": None, "expires_at": now + 24 * 3600, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
            "cancelled_at": None, "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": metadata}
        self.batches[bid] = batch
        runner = asyncio.get_running_loop().create_task(self._run(batch))
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)
        return batch

    def get(self, bid: str) -> dict[str, Any]:
        batch = self.batches.get(bid)
        if batch is None:
            raise ApiError(f"Batch not found: {bid}", status=404, param="batch_id")
        return batch

    def cancel(self, bid: str) -> dict[str, Any]:
        """Stop a running batch: its requests are aborted; finished lines stay in the output file."""
        batch = self.get(bid)
        if batch["status"] not in ("validating", "in_progress"):
            raise ApiError(f"Current status is {batch['status']}, no need to cancel", param="batch_id")
        batch["status"] = "cancelling"
        batch["cancelling_at"] = int(time.time())
        for task in self._tasks.get(bid, []):
            task.cancel()
        return batch

    # ---- execution ---------------------------------------------------------------------------

    def _parse_lines(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        raw = self.ctx.files.content(batch["input_file_id"]).decode("utf-8", errors="replace")
        lines: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        for n, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append({"code": "invalid_json_line", "message": f"Line {n} is not valid JSON: {e}", "line": n})
                continue
            problem = _line_problem(item, batch["endpoint"], seen)
            if problem:
                errors.append({"code": "invalid_request", "message": f"Line {n}: {problem}", "line": n})
                continue
            seen.add(item["custom_id"])
            lines.append(item)
        if errors or not lines:
            errors = errors or [{"code": "empty_file", "message": "The input file has no requests.", "line": None}]
            raise _BatchInvalid(errors)
        return lines

    async def _run(self, batch: dict[str, Any]) -> None:
        bid = batch["id"]
        try:
            lines = self._parse_lines(batch)
        except (_BatchInvalid, ApiError, OSError) as e:
            data = e.errors if isinstance(e, _BatchInvalid) else [{"code": "invalid_file", "message": str(e)}]
            batch.update(status="failed", failed_at=int(time.time()), errors={"object": "list", "data": data})
            return
        if batch["status"] == "cancelling":
            batch.update(status="cancelled", cancelled_at=int(time.time()))
            return
        batch.update(status="in_progress", in_progress_at=int(time.time()))
        batch["request_counts"]["total"] = len(lines)
        limit = asyncio.Semaphore(BATCH_CONCURRENCY)
        tasks = [asyncio.create_task(self._run_line(batch, item, limit)) for item in lines]
        self._tasks[bid] = tasks
        results = await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.pop(bid, None)
        batch["finalizing_at"] = int(time.time())
        outputs = [r for r in results if isinstance(r, dict) and r["error"] is None]
        failures = [r for r in results if isinstance(r, dict) and r["error"] is not None]
        if outputs:
            batch["output_file_id"] = self._write(bid, "output", outputs)
        if failures:
            batch["error_file_id"] = self._write(bid, "error", failures)
        now = int(time.time())
        if batch["status"] == "cancelling":
            batch.update(status="cancelled", cancelled_at=now)
        else:
            batch.update(status="completed", completed_at=now)

    def _write(self, bid: str, kind: str, rows: list[dict[str, Any]]) -> str:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
        return str(self.ctx.files.create(data, f"{bid}_{kind}.jsonl", "batch_output")["id"])

    async def _run_line(self, batch: dict[str, Any], item: dict[str, Any], limit: asyncio.Semaphore) -> dict[str, Any]:
        from .openai_api import run_chat, run_completion

        run = run_chat if batch["endpoint"] == "/v1/chat/completions" else run_completion
        row: dict[str, Any] = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": item["custom_id"]}
        async with limit:
            try:
                body = await run(self.ctx, item["body"])
            except (ApiError, ValueError) as e:
                status = e.status if isinstance(e, ApiError) else getattr(e, "status_code", 400)
                message = e.message if isinstance(e, ApiError) else str(e)
                batch["request_counts"]["failed"] += 1
                err = {"message": message, "type": "BadRequestError", "param": getattr(e, "param", None),
                       "code": status}
                return {**row, "response": {"status_code": status, "request_id": None, "body": {"error": err}},
                        "error": {"code": str(status), "message": message}}
        batch["request_counts"]["completed"] += 1
        return {**row, "response": {"status_code": 200, "request_id": body["id"], "body": body}, "error": None}


class _BatchInvalid(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors


def _line_problem(item: Any, endpoint: str, seen: set[str]) -> str | None:
    if not isinstance(item, dict):
        return "each line must be a JSON object."
    cid = item.get("custom_id")
    if not isinstance(cid, str) or not cid:
        return "custom_id must be a non-empty string."
    if cid in seen:
        return f"duplicate custom_id {cid!r}."
    if item.get("method", "POST") != "POST":
        return "method must be POST."
    if item.get("url") != endpoint:
        return f"url must be the batch endpoint {endpoint}, got {item.get('url')!r}."
    body = item.get("body")
    if not isinstance(body, dict):
        return "body must be a JSON object."
    if body.get("stream"):
        return "Streaming requests are not supported in batch mode"
    return None


def parse_upload(content_type: str, body: bytes) -> tuple[HTTPFile, str]:
    """(file, purpose) from a multipart/form-data upload."""
    if not content_type.startswith("multipart/form-data"):
        raise ApiError("Upload files as multipart/form-data with fields 'file' and 'purpose'.", param="file")
    args: dict[str, list[bytes]] = {}
    files: dict[str, list[HTTPFile]] = {}
    parse_body_arguments(content_type, body, args, files)
    if not files.get("file"):
        raise ApiError("The upload has no 'file' field.", param="file")
    purpose = args.get("purpose", [b"batch"])[0].decode("utf-8", errors="replace")
    if purpose not in ("batch", "batch_output", "fine-tune", "assistants", "user_data", "evals"):
        raise ApiError(f"purpose {purpose!r} is not supported (use 'batch').", param="purpose")
    return files["file"][0], purpose


# ---- handlers --------------------------------------------------------------------------------


class _OpenAIJson(BaseHandler):
    openai_errors = True


class FilesHandler(_OpenAIJson):
    """`POST /v1/files` (multipart upload) and `GET /v1/files` (list)."""

    def post(self) -> None:
        upload, purpose = parse_upload(self.request.headers.get("Content-Type", ""), self.body)
        self.write_json(self.ctx.files.create(upload.body, upload.filename or "upload.jsonl", purpose))

    def get(self) -> None:
        purpose = self.get_query_argument("purpose", None)
        self.write_json({"object": "list", "data": self.ctx.files.list(purpose), "has_more": False})


class FileHandler(_OpenAIJson):
    """`GET /v1/files/{id}` and `DELETE /v1/files/{id}`."""

    def get(self, fid: str) -> None:
        self.write_json(self.ctx.files.get(fid))

    def delete(self, fid: str) -> None:
        self.write_json(self.ctx.files.delete(fid))


class FileContentHandler(_OpenAIJson):
    def get(self, fid: str) -> None:
        data = self.ctx.files.content(fid)
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(data)


class BatchesHandler(_OpenAIJson):
    """`POST /v1/batches` (create) and `GET /v1/batches` (list, newest first)."""

    def post(self) -> None:
        self.write_json(self.ctx.batches.create(self.body_json()))

    def get(self) -> None:
        data = sorted(self.ctx.batches.batches.values(), key=lambda b: b["created_at"], reverse=True)
        self.write_json({"object": "list", "data": data, "has_more": False,
                         "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})


class BatchHandler(_OpenAIJson):
    def get(self, bid: str) -> None:
        self.write_json(self.ctx.batches.get(bid))


class BatchCancelHandler(_OpenAIJson):
    def post(self, bid: str) -> None:
        self.write_json(self.ctx.batches.cancel(bid))
