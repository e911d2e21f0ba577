"""What a text-only model gets for attachments, on every API: a PDF's text, and a short note in place of an image."""

from __future__ import annotations

import base64
import binascii
import functools
import io
import logging

from ..errors import InvalidRequestError

logger = logging.getLogger(__name__)

IMAGE_NOTE = "[image omitted: this model cannot see images]"


def image_note() -> str:
    _log_images_omitted()
    return IMAGE_NOTE


@functools.cache
def _log_images_omitted() -> None:
    """Once per process: the server log says why a client's images do not reach the model."""
    logger.warning("Images in requests are replaced by the note %r: the models served here read text only.",
                   IMAGE_NOTE)


def pdf_text(data: str, where: str) -> str:
    """A base64 PDF's text, page by page; a PDF that cannot be read is a 400 naming `where`."""
    from pypdf import PdfReader  # imported on first use: most requests carry no PDF

    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(f"{where}: not valid base64 ({exc})") from None
    try:
        reader = PdfReader(io.BytesIO(raw))
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as exc:  # pypdf raises many types on a damaged file (PdfReadError, KeyError, ...)
        raise InvalidRequestError(f"{where}: not a readable PDF ({exc})") from None
    text = "\n\n".join(f"[page {n}]\n{page.strip()}" for n, page in enumerate(pages, 1) if page.strip())
    return text or f"[a PDF of {len(pages)} page(s) without extractable text; it may hold only images]"
