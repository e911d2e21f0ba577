"""A llama.cpp sequence's KV state as bytes, for the persistent prompt cache (`prefix_store.py`)."""

from __future__ import annotations

import ctypes
import hashlib
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaContext

_SAMPLE = 4 << 20  # bytes hashed from each end of the model file


def model_identity(path: Path, params: llama_cpp.llama_context_params) -> str:
    """What a stored state is valid for: this llama.cpp build, this model file (its size and both ends,
    hashed: cheap for a 500 MB file, and it survives the file being reassembled elsewhere), and the
    context settings that shape the KV cache."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_SAMPLE))
        f.seek(max(0, size - _SAMPLE))
        h.update(f.read(_SAMPLE))
    return (f"llama-cpp-python {llama_cpp.__version__}; model {size} {h.hexdigest()}; n_ctx {params.n_ctx}; "
            f"kv {params.type_k}/{params.type_v}; flash_attn {params.flash_attn_type}; unified {params.kv_unified}")


class SequenceStates:
    """Copies a prefix of one sequence out of the context, and a stored state into a sequence. Runs on the
    thread that owns the context. `scratch` is a sequence id no slot uses."""

    def __init__(self, ctx: LlamaContext, scratch: int | None) -> None:
        self._ctx = ctx
        self._scratch = scratch

    def snapshot(self, seq_id: int, n_tokens: int) -> ctypes.Array | None:
        """The state of the first `n_tokens` of `seq_id` (shared into the scratch sequence, not copied)."""
        assert self._scratch is not None, "a prefix snapshot needs the scratch sequence"
        memory = self._ctx.memory
        llama_cpp.llama_memory_seq_rm(memory, self._scratch, 0, -1)
        llama_cpp.llama_memory_seq_cp(memory, seq_id, self._scratch, 0, n_tokens)
        try:
            return self.whole(self._scratch)
        finally:
            llama_cpp.llama_memory_seq_rm(memory, self._scratch, 0, -1)

    def whole(self, seq_id: int) -> ctypes.Array | None:
        """The state of all of `seq_id` (None: llama.cpp did not write it all)."""
        size = llama_cpp.llama_state_seq_get_size(self._ctx.ctx, seq_id)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self._ctx.ctx, buf, size, seq_id)
        return buf if written == size else None

    def restore(self, seq_id: int, state: bytearray | memoryview | ctypes.Array) -> bool:
        """Load `state` into the (empty) sequence `seq_id`; False when it did not fit or did not match."""
        view = memoryview(state)
        buf = (ctypes.c_uint8 * view.nbytes).from_buffer(view)
        return llama_cpp.llama_state_seq_set_data(self._ctx.ctx, buf, view.nbytes, seq_id) == view.nbytes
