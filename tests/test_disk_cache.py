"""The persistent prompt cache: long prefixes survive a restart, are shared by new prompts, and nothing
unverified is ever loaded. Real `parley serve` processes on SmolLM2 over one data directory."""

from __future__ import annotations

import time
from array import array
from pathlib import Path

import pytest

from conftest import SMOL
from parley.engines.llamacpp.prefix_store import PrefixStore

BLOCK = 256


def _document() -> str:
    colours = ["red", "green", "blue", "amber", "violet", "teal", "ochre"]
    return "\n".join(f"Crate {i} holds {i * 7 % 13} {colours[i % 7]} marbles and sits on shelf {i % 5}."
                     for i in range(110))


def _ask(client, question: str):
    return client.messages.create(model=SMOL, max_tokens=24, extra_body={"temperature": 0},
                                  system="You answer questions about the inventory below.\n\n" + _document(),
                                  messages=[{"role": "user", "content": question}])


def _stored(data_dir: Path, timeout: float = 30) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if files := sorted((data_dir / "prompt-cache").glob("*.kv")):
            return files
        time.sleep(0.2)
    raise AssertionError("no prompt-cache file was written")


@pytest.fixture(scope="module")
def cold(start_server, tmp_path_factory):
    """A first server answers two questions (the second from its RAM cache) and stores the prefix on disk."""
    data_dir = tmp_path_factory.mktemp("disk-cache")
    server = start_server("--data-dir", str(data_dir))
    client = server.client()
    first = _ask(client, "Which shelf is crate 3 on?")
    second = _ask(client, "How many marbles are in crate 12?")
    files = _stored(data_dir)
    server.stop()  # the store writes what it was handed before the model closes
    return data_dir, first, second, files


def test_a_restarted_server_restores_the_prefix_and_answers_the_same(start_server, cold):
    data_dir, first, second, files = cold
    assert first.usage.cache_read_input_tokens == 0
    assert len(files) == 1
    server = start_server("--data-dir", str(data_dir))
    client = server.client()

    again = _ask(client, "How many marbles are in crate 12?")  # a new question on the stored prefix
    restored = again.usage.cache_read_input_tokens
    assert restored >= 1024 and restored % BLOCK == 0
    assert restored < again.usage.input_tokens + restored  # the question itself was computed
    # Greedy, the restored prefix leads to the answer computed cold; only its first words are compared: the
    # prompt is prefilled in other chunks than cold, and float rounding may flip a later near-tie (a CI run gave
    # "Crate 12 holds 12 red marbles." against "Crate 12 has 12 marbles."). A wrong KV state would not start so.
    assert again.content[0].text.split()[:2] == second.content[0].text.split()[:2]
    assert "prompt cache: restored" in server.log_text()

    repeat = _ask(client, "Which shelf is crate 3 on?")
    assert repeat.content[0].text.split()[:2] == first.content[0].text.split()[:2]
    assert server.health()["models"][SMOL]["disk_cache_files"] == 1


def test_a_corrupt_entry_is_discarded_not_loaded(start_server, cold, tmp_path):
    data_dir, first, _, _ = cold
    corrupt_dir = tmp_path / "data"
    (corrupt_dir / "prompt-cache").mkdir(parents=True)
    for path in _stored(data_dir):
        data = bytearray(path.read_bytes())
        data[-100] ^= 0xFF  # one flipped bit in the KV state
        (corrupt_dir / "prompt-cache" / path.name).write_bytes(data)
    server = start_server("--data-dir", str(corrupt_dir))
    answer = _ask(server.client(), "Which shelf is crate 3 on?")
    assert answer.usage.cache_read_input_tokens == 0
    assert answer.content[0].text == first.content[0].text
    assert "checksum mismatch" in server.log_text()


def test_disk_cache_size_zero_turns_it_off(start_server, tmp_path):
    server = start_server("--data-dir", str(tmp_path), "--disk-cache-size", "0")
    _ask(server.client(), "Which shelf is crate 3 on?")
    time.sleep(1)
    assert not list((tmp_path / "prompt-cache").glob("*.kv"))


# ---- the store on its own: real files, made-up state bytes

def _store(root: Path, max_bytes: int = 1 << 30, identity: str = "model-a") -> PrefixStore:
    return PrefixStore(root, identity, max_bytes, block=4, min_tokens=8)


def _save(store: PrefixStore, tokens: list[int]) -> None:
    assert store.save(tokens, bytearray(bytes(range(256)) * 4))
    store.flush()


def test_the_longest_stored_prefix_is_found_and_verified(tmp_path):
    store = _store(tmp_path)
    _save(store, list(range(16)))
    prompt = list(range(12)) + [99, 98, 97]
    match = store.longest(prompt)
    assert match is not None and match.n_tokens == 12  # the whole blocks the prompt shares with the file
    restored = store.load(match, prompt)
    assert restored is not None and restored.usable == 12 and restored.tokens == list(range(16))
    assert bytes(restored.state) == bytes(range(256)) * 4
    assert store.longest([5, *range(20)]) is None  # differs in the first block
    assert store.longest(list(range(8))) is None  # its last token must stay to decode
    assert _store(tmp_path).longest(prompt) is not None  # found again after a restart
    assert _store(tmp_path, identity="model-b").longest(prompt) is None  # another model's file


@pytest.mark.parametrize("damage", ["truncate", "flip_token", "identity", "garbage"])
def test_a_damaged_file_is_deleted_and_never_loaded(tmp_path, damage):
    store = _store(tmp_path)
    _save(store, list(range(16)))
    (path,) = tmp_path.glob("*.kv")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-10]
    elif damage == "flip_token":
        tokens = array("i", list(range(16))).tobytes()
        at = data.find(tokens)
        data[at + 4] ^= 1
    elif damage == "identity":
        data = data.replace(b'"model-a"', b'"model-z"')
    else:
        data = bytearray(b"not a cache file at all")
    path.write_bytes(data)
    match = store.longest(list(range(20)))
    assert match is not None  # the index still names it: the damage is found when it is read
    assert store.load(match, list(range(20))) is None
    assert not path.exists() and store.longest(list(range(20))) is None


def test_a_longer_file_supersedes_its_prefix_and_the_bound_evicts_the_oldest(tmp_path):
    store = _store(tmp_path, max_bytes=3000)
    _save(store, list(range(12)))
    _save(store, list(range(16)))  # extends the first: one file per conversation
    assert len(list(tmp_path.glob("*.kv"))) == 1
    _save(store, [7] * 12)
    time.sleep(0.01)
    _save(store, [8] * 12)  # three files of ~1.1 kB pass the 3,000-byte bound: the oldest goes
    names = {p.name for p in tmp_path.glob("*.kv")}
    assert len(names) == 2 and store.longest(list(range(17))) is None
    assert store.longest([8] * 13) is not None


def test_a_parked_state_dropped_from_memory_goes_to_disk(start_server, tmp_path):
    """Parked (idle) states beyond the bound of host memory (--cache-ram) go to the disk prompt cache instead
    of nowhere, least recently used first: the next turn of a conversation whose state left memory reads its
    prompt *and its answer* from disk, where the prompt alone was stored when it was prefilled. (SmolLM2's
    state is 23,040 bytes a token: 40 MB holds one of these ~1,000-token conversations, not two.)"""
    server = start_server("--data-dir", str(tmp_path), "--n-ctx", "2048", "--parallel", "4",
                          "--disk-cache-min-tokens", "256", "--cache-ram", "40MB")
    client = server.client()
    notes = " ".join(f"item-{i}" for i in range(150))
    count = [{"role": "user", "content": f"Notes: {notes}\n\nCount from 1 to 150, one number per line."}]
    first = client.messages.create(model=SMOL, max_tokens=400, extra_body={"temperature": 0}, messages=count)
    prompt = first.usage.input_tokens
    assert first.usage.output_tokens >= 200, first.content[0].text[:200]  # the answer to carry to disk
    for topic in ("rivers", "mountains"):  # two more conversations: the first's parked state is dropped
        filler = " ".join(f"{topic}-fact-{j}" for j in range(220))
        client.messages.create(model=SMOL, max_tokens=4, extra_body={"temperature": 0},
                               messages=[{"role": "user", "content": f"Notes: {filler}. Summarise them."}])
    deadline = time.monotonic() + 30
    while "a parked state of" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # the writer thread writes it
    follow = count + [{"role": "assistant", "content": first.content[0].text},
                      {"role": "user", "content": "Now count down from 5."}]
    again = client.messages.create(model=SMOL, max_tokens=4, extra_body={"temperature": 0}, messages=follow)
    assert again.usage.cache_read_input_tokens > prompt, (prompt, again.usage)  # the answer came from disk too
    assert "a parked state of" in server.log_text() and "tokens from disk" in server.log_text()
    assert 0 < server.health()["models"][SMOL]["parked_bytes"] <= 40_000_000  # the newer ones stayed in memory
