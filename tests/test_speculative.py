"""Speculative decoding by prompt lookup: drafts verified in one batch give the output plain decoding gives."""

from __future__ import annotations

import openai
import pytest

from conftest import SMOL
from parley.engines.llamacpp.draft_cost import DraftCost
from parley.engines.llamacpp.prompt_lookup import PromptLookup

PASSAGE = ("The lighthouse on the northern cape was built in 1871 from granite quarried on the island itself. "
           "Its lamp burned whale oil at first, then paraffin, and since 1954 it has been electric. The keeper's "
           "cottage beside it is now a small museum with the original logbooks, a brass telescope and a map "
           "of every wreck on the reef since records began.")


def test_a_draft_is_what_followed_the_latest_earlier_occurrence():
    lookup = PromptLookup([1, 2, 3, 4, 5, 6, 9, 2, 3], max_draft=16)
    assert lookup.draft(8) == [4]  # starts at 1 token…
    lookup.taken(1, 1)  # …and doubles while drafts are taken
    assert lookup.draft(8) == [4, 5]
    lookup.taken(2, 2)
    assert lookup.draft(8) == [4, 5, 6, 9]
    assert lookup.draft(2) == [4, 5]  # never past the room given
    lookup.taken(4, 1)
    assert lookup.draft(8) == [4]  # a miss shrinks it to what was taken


def test_drafts_that_miss_entirely_rest_for_longer_each_time():
    lookup = PromptLookup([1, 2, 3, 4, 5, 6, 9, 2, 3], max_draft=16)
    rests = []
    for _ in range(7):
        assert lookup.draft(8) == [4]
        lookup.taken(1, 0)
        rests.append(0)
        while not lookup.draft(8):
            rests[-1] += 1
    assert rests == [1, 2, 4, 8, 16, 32, 32]  # doubling, up to MAX_REST
    lookup.taken(1, 1)  # a taken draft ends the rests
    assert lookup.draft(8) == [4, 5]


def test_the_tail_never_matches_itself_and_the_latest_occurrence_wins():
    lookup = PromptLookup([7, 8], max_draft=4)
    assert lookup.draft(4) == []  # the only (7, 8) is the tail itself
    for token in [1, 7, 8]:
        lookup.append(token)
    assert lookup.draft(4) == [1]
    for token in [2, 7, 8]:
        lookup.append(token)
    assert lookup.draft(4) == [2]  # the newer occurrence


def _cost(step_ms: dict[int, float], max_draft: int = 16) -> DraftCost:
    cost = DraftCost(max_draft)
    for n_tokens, ms in step_ms.items():
        cost.record(n_tokens, ms / 1000)
    return cost


EPYC = {1: 17.5, 2: 43.4, 3: 51.4, 4: 57.5, 5: 74.4, 9: 89.6, 17: 116.1}  # measured on a 2-core EPYC


def test_a_draft_is_priced_from_timed_steps_and_optimistically_until_timed():
    cost = _cost({1: 10, 2: 30})
    assert cost.price(1) == pytest.approx(2.0)  # a step of 2 tokens took 3 plain ones
    assert cost.price(8) == pytest.approx(2.0)  # not timed yet: like the largest smaller size timed
    cost.record(9, 0.060)
    assert cost.price(8) == pytest.approx(5.0)
    cost.record(9, 0.110)  # later steps weigh in, not all at once
    assert 5.0 < cost.price(8) < 10.0
    assert DraftCost(16).price(4) == 0.0  # nothing timed: drafts are tried


def test_dear_drafts_must_be_longer_and_need_a_longer_match():
    assert _cost({1: 10, 2: 11, 3: 12}).terms() == (1, 3)  # nearly free rows: any draft, a short match
    shortest, ngram = _cost(EPYC).terms()
    assert (shortest, ngram) == (3, 7)  # a 2-token step costs 2.5 plain ones: 3 tokens at least, a 7-gram
    assert _cost({1: 10, **{n: 10 * n for n in range(2, 18)}}).terms() is None  # rows cost a step each: never


def test_on_a_dear_machine_a_short_match_is_not_drafted_and_a_long_one_is():
    cost = _cost(EPYC)
    text = list(range(100, 120))
    lookup = PromptLookup([*text, 7, 8, 1, 2, 3, 4, 5, 6, 9], max_draft=16, cost=cost)
    for token in [0, 7, 8]:
        lookup.append(token)
    assert lookup.draft(16) == []  # (7, 8) occurred before, but 2 tokens are too weak a sign here
    lookup = PromptLookup(text, max_draft=16, cost=cost)
    for token in text[:8]:
        lookup.append(token)
    assert lookup.draft(16) == text[8:11]  # an 8-gram: the shortest draft that can pay, 3 tokens


def test_a_draft_taken_less_than_it_cost_counts_as_a_miss():
    cost = _cost(EPYC)
    text = list(range(100, 140))
    lookup = PromptLookup(text, max_draft=16, cost=cost)
    for token in text[:8]:
        lookup.append(token)
    assert len(lookup.draft(16)) == 3
    lookup.taken(3, 1)  # 1 token taken, for a price of ~2.3 steps
    lookup.append(text[8])
    assert lookup.draft(16) == []  # resting


ASK = f"Repeat this text exactly, word for word:\n\n{PASSAGE}"


def _echo(server) -> str:
    answer = server.client().messages.create(model=SMOL, max_tokens=120, extra_body={"temperature": 0},
                                             messages=[{"role": "user", "content": ASK}])
    return answer.content[0].text


def _echo_sampled(server) -> str:
    """At temperature 0.8 with a seed: the same draws from the same rows, drafts or not."""
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0)
    answer = client.chat.completions.create(model=SMOL, max_tokens=120, temperature=0.8, seed=7,
                                            messages=[{"role": "user", "content": ASK}])
    return answer.choices[0].message.content


@pytest.fixture(scope="module")
def drafting(start_server):
    """Both sides fresh and one-slot: on a shared server, where a sequence's cells sit in the KV cache can
    change float rounding and flip a near tie (", and" against " and" once), drafts or not."""
    return start_server("--parallel", "1")


@pytest.fixture(scope="module")
def plain(start_server):
    return start_server("--parallel", "1", "--draft-max", "0")


@pytest.mark.parametrize("answer", [_echo, _echo_sampled])
def test_drafts_give_exactly_the_output_of_plain_decoding(drafting, plain, answer):
    before = drafting.health()["models"].get(SMOL, {}).get("draft_accepted", 0)
    assert answer(drafting) == answer(plain)
    assert drafting.health()["models"][SMOL]["draft_accepted"] > before  # drafts were taken: the path is covered
    assert plain.health()["models"][SMOL]["draft_tokens"] == 0
