"""RuntimeEndpoint: programs against a server's native HTTP API (this project's or SGLang's).

Uses `/get_model_info`, `/generate` (JSON and SSE), `/flush_cache`, `/get_server_info` (falling back
to `/server_info`) and `/tokenize`. Servers that publish their chat template in `/get_model_info`
(this project's) lend their tokenizer through `ServerTokenizer`; otherwise, when the server's
tokenizer directory exists on this machine it is loaded. Either way `select` scoring and batch
prefills work on exact token ids.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .native import NativeBackend, local_tokenizer
from .server_tokenizer import ServerTokenizer

CONNECT_TIMEOUT_S = 10.0


class ServerError(RuntimeError):
    """The server answered with an error status (or an error event in a stream)."""

    def __init__(self, status_code: int, content: Any) -> None:
        message = content
        if isinstance(content, dict):
            error = content.get("error", content)
            message = error.get("message", error) if isinstance(error, dict) else error
        super().__init__(f"{status_code}: {message}" if status_code else str(message))
        self.status_code = status_code
        self.content = content


def _decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


class RuntimeEndpoint(NativeBackend):
    """`RuntimeEndpoint(base_url, api_key=None, verify=None, chat_template_name=None)`."""

    def __init__(self, base_url: str, api_key: str | None = None, verify: str | bool | None = None,
                 chat_template_name: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.verify = True if verify is None else verify
        self._aclient: httpx.AsyncClient | None = None
        model_info = self._get("/get_model_info")
        if not isinstance(model_info, dict) or ("model_path" not in model_info and chat_template_name is None):
            raise ServerError(0, f"{self.base_url}/get_model_info did not return a model_path: {model_info!r}")
        super().__init__(model_info, chat_template_name, self._tokenizer_for(model_info))

    def _tokenizer_for(self, model_info: dict[str, Any]) -> Any:
        template = model_info.get("chat_template")
        if isinstance(template, str):
            return ServerTokenizer(template, dict(model_info.get("chat_template_tokens") or {}), self._post_json)
        return local_tokenizer(model_info.get("tokenizer_path"))

    # ---- HTTP ----------------------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        with httpx.Client(timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S), verify=self.verify) as client:
            return client.request(method, self.base_url + path, json=body, headers=self.headers)

    def _post_json(self, path: str, body: dict[str, Any]) -> Any:
        response = self._request("POST", path, body)
        if response.status_code != 200:
            raise ServerError(response.status_code, _decode(response))
        return _decode(response)

    def _get(self, path: str) -> Any:
        response = self._request("GET", path)
        if response.status_code != 200:
            raise ServerError(response.status_code, _decode(response))
        return _decode(response)

    def _client(self) -> httpx.AsyncClient:
        # Created on the program loop, where every model call runs.
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S),
                                              verify=self.verify, headers=self.headers)
        return self._aclient

    async def _post(self, body: dict[str, Any]) -> Any:
        response = await self._client().post(self.base_url + "/generate", json=body)
        if response.status_code != 200:
            raise ServerError(response.status_code, _decode(response))
        return response.json()

    async def _post_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async with self._client().stream("POST", self.base_url + "/generate", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                raise ServerError(response.status_code, _decode(response))
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk and "text" not in chunk:
                    raise ServerError(0, chunk)
                yield chunk

    # ---- admin -------------------------------------------------------------------------------

    def flush_cache(self) -> Any:
        response = self._request("POST", "/flush_cache")
        if response.status_code != 200:
            raise ServerError(response.status_code, _decode(response))
        return response.text

    def get_server_info(self) -> dict[str, Any]:
        try:
            return dict(self._get("/get_server_info"))
        except ServerError as e:
            if e.status_code != 404:
                raise
            return dict(self._get("/server_info"))

    def get_model_info(self) -> dict[str, Any]:
        return dict(self.model_info)

    def start_profile(self) -> None:
        self._get("/start_profile")

    def stop_profile(self) -> None:
        self._get("/stop_profile")

    def shutdown(self) -> None:
        if self._aclient is not None:
            from .. import runloop

            client, self._aclient = self._aclient, None
            runloop.submit(client.aclose())
