"""Images and videos as the runtime receives them: base64 strings."""

from __future__ import annotations

import base64
import io
import os
from typing import Any


def encode_image_base64(image: Any) -> str:
    """A file path, raw bytes, a PIL image or an image tensor → base64 (no data: prefix)."""
    if isinstance(image, str):
        if image.startswith("data:"):
            return image.split(",", 1)[1]
        if not os.path.isfile(image):
            raise FileNotFoundError(f"Image file not found: {image}")
        with open(image, "rb") as f:
            return base64.b64encode(f.read()).decode("ascii")
    if isinstance(image, (bytes, bytearray)):
        return base64.b64encode(bytes(image)).decode("ascii")
    if hasattr(image, "save"):  # PIL image
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode("ascii")
    if hasattr(image, "numpy"):  # torch tensor, [C, H, W] or [H, W, C]
        from PIL import Image

        array = image.detach().cpu().numpy()
        if array.ndim == 3 and array.shape[0] in (1, 3, 4):
            array = array.transpose(1, 2, 0)
        if array.dtype != "uint8":
            array = (array.clip(0, 1) * 255).astype("uint8") if array.max() <= 1.0 else array.astype("uint8")
        return encode_image_base64(Image.fromarray(array.squeeze()))
    raise TypeError(f"sgl.image() takes a path, bytes, a PIL image or a tensor, not {type(image).__name__}.")


def encode_video_base64(path: str, num_frames: int) -> str:
    """`num_frames` evenly spaced frames, each PNG-encoded, concatenated, base64'd, prefixed "video:"."""
    try:
        import cv2
    except ImportError:
        raise ImportError("sgl.video() needs OpenCV: pip install opencv-python-headless") from None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Video file not found: {path}")
    capture = cv2.VideoCapture(path)
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if total <= 0 or num_frames <= 0:
        raise ValueError(f"Cannot sample {num_frames} frames from {path} ({total} frames).")
    wanted = {int(i * total / num_frames) for i in range(num_frames)}
    frames = []
    for index in range(total):
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            ok, png = cv2.imencode(".png", frame)
            if ok:
                frames.append(png.tobytes())
    capture.release()
    return "video:" + base64.b64encode(b"".join(frames)).decode("ascii")
