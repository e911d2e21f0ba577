"""Content blocks a text-only model cannot take as they are → prompt text: documents (plain text, content
blocks, a PDF's extracted text), search results, and a short note in place of each image. One renderer for
user, system and `tool_result` content, so that a file an agent's tool returns reads the same as one a user
attaches."""

from __future__ import annotations

import base64
import binascii
import functools
import io
import logging
from typing import Any

from ...errors import InvalidRequestError
from .protocol import (
    Base64PDFSource,
    ContentBlockSource,
    DocumentBlockParam,
    ImageBlockParam,
    PlainTextSource,
    SearchResultBlockParam,
    TextBlockParam,
    ToolReferenceBlockParam,
)

logger = logging.getLogger(__name__)

IMAGE_NOTE = "[image omitted: this model cannot see images]"
TEXT_BLOCKS = (TextBlockParam, ImageBlockParam, DocumentBlockParam, SearchResultBlockParam, ToolReferenceBlockParam)


def unsupported(block: Any, where: str) -> InvalidRequestError:
    return InvalidRequestError(f"{where}: content block type '{block.type}' is not supported")


def block_text(block: Any, where: str) -> str:
    """One block of `TEXT_BLOCKS` as prompt text; any other block is a 400 naming `where`."""
    if isinstance(block, TextBlockParam):
        return block.text
    if isinstance(block, ImageBlockParam):
        _note_images_omitted()
        return IMAGE_NOTE
    if isinstance(block, DocumentBlockParam):
        return _document(block, f"{where}.document")
    if isinstance(block, SearchResultBlockParam):
        body = "\n\n".join(b.text for b in block.content)
        return (f"<search_result>\n<source>{block.source}</source>\n<title>{block.title}</title>\n"
                f"<content>\n{body}\n</content>\n</search_result>")
    if isinstance(block, ToolReferenceBlockParam):  # the tool itself is offered from now on (translate.py)
        return f"[tool loaded: {block.tool_name}]"
    raise unsupported(block, where)


def joined_text(blocks: list[Any], where: str) -> str:
    return "\n\n".join(block_text(block, f"{where}.{i}") for i, block in enumerate(blocks))


@functools.cache
def _note_images_omitted() -> None:
    """Once per process: the server log says why a client's images do not reach the model."""
    logger.warning("Images in requests are replaced by the note %r: the models served here read text only.",
                   IMAGE_NOTE)


def _document(block: DocumentBlockParam, where: str) -> str:
    source = block.source
    if isinstance(source, PlainTextSource):
        body = source.data
    elif isinstance(source, ContentBlockSource):
        body = source.content if isinstance(source.content, str) else joined_text(
            source.content, f"{where}.source.content.content")
    elif isinstance(source, Base64PDFSource):
        body = pdf_text(source.data, f"{where}.source.base64.data")
    else:  # a URL (not fetched: the server reaches no network on a client's behalf) or a Files API id
        raise InvalidRequestError(f"{where}.source.{source.type}: document source type '{source.type}' is not "
                                  "supported; send the document as base64, plain text or content blocks")
    head = "".join(f"<{key}>{value}</{key}>\n" for key, value in (("title", block.title), ("context", block.context))
                   if value)
    return f"<document>\n{head}<content>\n{body}\n</content>\n</document>"


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
