"""Content blocks a text-only model cannot take as they are → prompt text: documents (plain text, content
blocks, a PDF's extracted text), search results, and a short note in place of each image. One renderer for
user, system and `tool_result` content, so that a file an agent's tool returns reads the same as one a user
attaches."""

from __future__ import annotations

from typing import Any

from ...errors import InvalidRequestError
from ..attachments import image_note, pdf_text
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

TEXT_BLOCKS = (TextBlockParam, ImageBlockParam, DocumentBlockParam, SearchResultBlockParam, ToolReferenceBlockParam)


def unsupported(block: Any, where: str) -> InvalidRequestError:
    return InvalidRequestError(f"{where}: content block type '{block.type}' is not supported")


def block_text(block: Any, where: str) -> str:
    """One block of `TEXT_BLOCKS` as prompt text; any other block is a 400 naming `where`."""
    if isinstance(block, TextBlockParam):
        return block.text
    if isinstance(block, ImageBlockParam):
        return image_note()
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
