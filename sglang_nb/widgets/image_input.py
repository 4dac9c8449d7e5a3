"""ImageInput: pick an image in the notebook, see it, and pass it to a program as `sgl.image(...)`.

Uploads travel to the kernel as one websocket message; Jupyter's default limit is about 10 MB and
anything larger fails silently in the browser, so files over `max_bytes` (8 MB by default) are
refused with a message that says so. Images larger than `max_side` pixels on their longer side are
downscaled (pillow) before they reach the model: vision encoders resize anyway, and the request body
stays small.
"""

from __future__ import annotations

import io
from typing import Any, cast

import ipywidgets as widgets
import traitlets

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_SIDE = 1024
_WEBSOCKET_HINT = ("Jupyter sends uploads as one websocket message (about 10 MB at most by default; "
                   "raise c.ServerApp.tornado_settings['websocket_max_message_size'] for more).")


class ImageInput(widgets.VBox):
    """A FileUpload with a preview; `.value` holds the (downscaled) image bytes, `.image()` the program
    expression `sgl.image(value)`."""

    # traitlets types Bytes as never None, whatever allow_none says; the trait does hold None here.
    value = cast("traitlets.TraitType[bytes | None, bytes | None]",
                 traitlets.Bytes(None, allow_none=True, help="The image bytes the model receives (None: nothing yet)."))
    format = traitlets.Unicode("png", help="'png' or 'jpeg': the encoding of `value`.")
    message = traitlets.Unicode("", help="What happened to the last upload (size, downscaling, errors).")

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES, max_side: int = DEFAULT_MAX_SIDE,
                 description: str = "Image") -> None:
        if max_bytes < 1 or max_side < 16:
            raise ValueError("max_bytes must be positive and max_side at least 16 pixels.")
        self.max_bytes, self.max_side = max_bytes, max_side
        self.uploader = widgets.FileUpload(accept="image/*", multiple=False, description=description)
        self.preview = widgets.Image(format="png", width=256)
        self.preview.layout.display = "none"
        self.label = widgets.HTML(f"<small>Up to {max_bytes // (1024 * 1024)} MB; larger sides than {max_side} px "
                                  "are downscaled.</small>")
        super().__init__([self.uploader, self.preview, self.label])
        self.uploader.observe(self._on_upload, names="value")

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0]
        content = item["content"]
        data = content.tobytes() if isinstance(content, memoryview) else bytes(content)
        self.load_bytes(data, name=str(item.get("name", "upload")), size=int(item.get("size", len(data))))

    def load_bytes(self, data: bytes, name: str = "image", size: int | None = None) -> None:
        """Use `data` (any format pillow reads) as the image, as if it had been uploaded."""
        from PIL import Image, UnidentifiedImageError

        size = len(data) if size is None else size
        if size > self.max_bytes or len(data) > self.max_bytes:
            self._fail(f"{name}: {size / 1e6:.1f} MB is over the {self.max_bytes / 1e6:.1f} MB limit. "
                       f"{_WEBSOCKET_HINT} Use a smaller file.")
            return
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except (UnidentifiedImageError, OSError) as e:
            self._fail(f"{name}: not an image pillow can read ({e}).")
            return
        note = f"{name}: {img.width}×{img.height}"
        if max(img.size) > self.max_side:
            img.thumbnail((self.max_side, self.max_side))
            note += f", downscaled to {img.width}×{img.height}"
        fmt = "jpeg" if img.mode in ("RGB", "L") and (img.format or "").upper() in ("JPEG", "JPG") else "png"
        out = io.BytesIO()
        img.save(out, format=fmt.upper())
        self.format, self.value = fmt, out.getvalue()
        self.preview.format, self.preview.value = fmt, self.value
        self.preview.layout.display = ""
        self.message = note + f" ({len(self.value) / 1024:.0f} KB sent to the model)"
        self.label.value = f"<small>{self.message}</small>"

    def _fail(self, message: str) -> None:
        self.value = None
        self.preview.layout.display = "none"
        self.message = message
        self.label.value = f'<small style="color:#b00">{message}</small>'
        self.uploader.value = ()

    def image(self) -> Any:
        """`sgl.image(<the bytes>)` for a program: `s += sgl.user(img.image() + "What is this?")`."""
        if self.value is None:
            raise ValueError("No image yet: pick a file with the upload button first.")
        from sglang_nb.lang import image

        return image(self.value)

    def clear(self) -> None:
        self.uploader.value = ()
        self.value = None
        self.preview.layout.display = "none"
        self.message = ""


__all__ = ["ImageInput"]
