"""A reasoning model for the tests: a real packaged GGUF whose chat template is replaced (with the `gguf`
package) by a Qwen3-style reasoning template (`enable_thinking`, `<think>` blocks). With the `<think>` that
the template opens, the real model writes reasoning-shaped text."""

from __future__ import annotations

import hashlib
from pathlib import Path

import gguf
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

QWEN3_STYLE_TEMPLATE = """\
{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}{%- endif %}
{%- for message in messages %}
{%- if message.role == 'user' %}{{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' }}
{%- elif message.role == 'assistant' %}{{- '<|im_start|>assistant\\n' }}
{%- if message.reasoning_content and loop.last %}
{{- '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' }}
{%- endif %}
{{- message.content + '<|im_end|>\\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}
{%- else %}{{- '<think>\\n' }}{%- endif %}
{%- endif %}"""


def build_reasoning_gguf(source: Path, target_dir: Path, name: str) -> Path:
    """Copy `source` with the reasoning template; cached by source size and template."""
    return build_gguf_with_template(source, target_dir, name, QWEN3_STYLE_TEMPLATE)


def build_gguf_with_template(source: Path, target_dir: Path, name: str, template_text: str) -> Path:
    """Copy `source` with another chat template; cached by source size and template."""
    key = hashlib.sha256(f"{source.stat().st_size}:{template_text}".encode()).hexdigest()[:12]
    target = target_dir / f"{name}.gguf"
    stamp = target_dir / f"{name}.{key}.ok"
    if target.is_file() and stamp.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    reader = gguf.GGUFReader(source, "r")
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(str(target), arch=arch, endianess=reader.endianess)
    template = MetadataDetails(gguf.GGUFValueType.STRING, template_text)
    copy_with_new_metadata(reader, writer, {gguf.Keys.Tokenizer.CHAT_TEMPLATE: template}, [])
    stamp.touch()
    return target
