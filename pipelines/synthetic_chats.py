"""Synthetic multi-turn chats and math chats (paper Tables 7 and 8) from any OpenAI-compatible
chat endpoint.

Each item is (kind, input, target language): kind "chat" fills Table 7 with an
Everyday-Conversations topic, kind "math" fills Table 8 with an OpenMathInstruct-2 problem and
its reference solution. NUM_TURNS is drawn from {4, 6, 8, 10, 12} and every optional part of
the prompt is kept with probability 1/2, both from a generator seeded by the item's id, so a
rerun builds the same prompt for the same item.

Which parts are optional: the paper prints them in red, and our copy of the paper has lost
the colour. We take the user-side constraints, which the prompts themselves describe as
occasional ("Approximately 20% of the time", "Occasionally"), plus Table 7's cultural-relevance
instruction; they are marked ⟦...⟧ below. The prompts are otherwise the paper's text; its
"‘‘‘json" is the LaTeX rendering of a Markdown fence and is written ```json here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass
from typing import Any, Iterable

from pipelines.validate import text_problem

log = logging.getLogger(__name__)

NUM_TURNS_CHOICES = (4, 6, 8, 10, 12)

CHAT_PROMPT = """You are an expert synthetic data generator. Your task is to generate a realistic, multi-turn conversation between a USER and an AI ASSISTANT based on a specific topic.
SETTINGS:
- Topic: {TOPIC}
- Target Language: {TGT_LANG}
- Conversation Length: Approximately {NUM_TURNS} turns (total messages between User and Assistant).

INSTRUCTIONS FOR “USER” GENERATION:
1. Language: Fluent, natural {TGT_LANG}.
2. Content: Start by asking about the Topic. Follow-up questions should dig deeper, asking for opinions, comparisons, or specific details.
⟦3. Cultural Relevance: The User’s perspective, idioms, and context must be culturally relevant to {TGT_LANG}. (e.g., if the language is Japanese and the topic is ‘Lunch’, discuss Bento or Ramen, not PB&J sandwiches).
⟧
USER CONSTRAINTS:
⟦- Length Constraints: Approximately 20% of the time, the User must explicitly constrain the Assistant’s output length (e.g., ‘Answer with a single word’, ‘Give me a bulleted list’, ‘Keep it under 10 words’).
⟧⟦- Unconventional Formatting: Occasionally, the User must request the response in an unusual format or persona (e.g., ’Return the answer as a valid JSON dictionary’, ’Answer in pirate speech’).
⟧
INSTRUCTIONS FOR “ASSISTANT” GENERATION:
1. Language: Fluent, natural {TGT_LANG}.
2. Behavior: Helpful, accurate, and culturally aware, unless a specific interaction scenario (below) requires otherwise.
3. Responsiveness: If the User sets a length or format constraint, the Assistant MUST strictly obey it.

REQUIRED INTERACTION SCENARIOS:
Select AT LEAST ONE of the following specific scenarios to naturally weave into the conversation:

NEGATIVE/ADVERSARIAL SCENARIOS:
1. The ‘Hallucination’ & Correction: The ASSISTANT provides a factually incorrect answer. The USER corrects it. The ASSISTANT apologizes and provides the correct answer.
2. The Valid Refusal (Impossible Request): The USER asks an impossible or out-of-bounds question. The ASSISTANT politely declines to answer.
3. The False Correction (Assistant stands its ground): The ASSISTANT provides a correct answer. The USER incorrectly claims it is wrong (and may provide a wrong alternative). The ASSISTANT politely but firmly asserts its correctness and explains why.

COMPLEX INTERACTION SCENARIOS:
1. The Ambiguous Query: The USER asks a vague follow-up using unclear pronouns (e.g., ‘What about that other one?’). The ASSISTANT must politely ask for clarification before answering.
2. The Compound Question: The USER asks at least 3 distinct questions in a single message. The ASSISTANT must systematically answer all parts.
3. The Pivot: The USER abruptly changes the sub-topic mid-conversation. The ASSISTANT follows the pivot smoothly.
4. The Goalpost Move: The USER asks the ASSISTANT to rewrite its previous answer with a completely new constraint (e.g., ‘Now make it rhyme’ or ‘Explain it like I am 5’).

OUTPUT FORMAT:
Return strictly a valid JSON list of dictionaries. Do not include markdown formatting (like ```json).
Format:
[
 {"turn": 1, "role": "user", "content": "…"},
 {"turn": 1, "role": "assistant", "content": "…"},
 …
]"""

MATH_PROMPT = """You are an expert synthetic data generator. Your task is to generate a realistic, multi-turn conversation between a USER and an AI ASSISTANT focused on solving and discussing a specific math problem.
REFERENCE MATERIAL (ENGLISH):
- Math Problem: {PROBLEM}
- Reference Solution: {SOLUTION}

SETTINGS:
- Target Language: {TGT_LANG}
- Conversation Length: Approximately {NUM_TURNS} turns (total messages between User and Assistant).

INSTRUCTIONS FOR “USER” GENERATION:
1. Language & Natural Framing: Fluent, natural {TGT_LANG}. Do NOT directly or stiffly translate the English reference problem. Internalize the problem, and have the User ask it naturally in {TGT_LANG} as if they just encountered it in their homework or daily life.
2. Progression: Start by presenting the math problem. Follow-up questions should dig deeper into the methodology, ask for alternative ways to solve it, or introduce the complex/adversarial scenarios below.

USER CONSTRAINTS:
⟦- Direct Answer Constraint: Approximately 20% of the time, the User’s first message must explicitly ask for the final answer ONLY, without any reasoning or step-by-step breakdown (e.g., ‘Just give me the final number’, ‘Answer directly without explanation’).
⟧⟦- Unconventional Formatting: Occasionally, the User must request the math steps in a specific format (e.g., ’Return the steps as a JSON list’, ’Explain the logic using pirate speech’, ’Put every mathematical operation in a separate bullet point’).
⟧
INSTRUCTIONS FOR “ASSISTANT” GENERATION:
1. Language: Fluent, natural {TGT_LANG}. Ensure mathematical terms are correctly translated.
2. Accuracy: The math must be flawlessly executed and align with the logic of the Reference Solution, unless a negative scenario explicitly requires an error.
3. Responsiveness: If the User asks for a direct answer without reasoning in their first turn, the Assistant MUST output exactly the final number/solution and nothing else. The Assistant must strictly obey all other length or formatting constraints requested by the User.

REQUIRED INTERACTION SCENARIOS:
Select AT LEAST ONE of the following specific scenarios to naturally weave into the conversation:

NEGATIVE/ADVERSARIAL MATH SCENARIOS:
1. The Calculation Error & Correction: The ASSISTANT makes a subtle calculation error or uses the wrong formula in one of the steps. The USER catches the math error and corrects it. The ASSISTANT apologizes, recalculates, and provides the correct answer.
2. The Missing Information (Valid Refusal): The USER asks a follow-up math question that lacks the necessary variables to be solved. The ASSISTANT politely explains what information is missing and why the calculation cannot be performed.
3. The False Correction (Assistant stands its ground): The ASSISTANT solves a step correctly. The USER incorrectly claims it is wrong based on a common math misconception (e.g., messing up the order of operations). The ASSISTANT politely but firmly asserts its correctness and explains the mathematical rule.

COMPLEX MATH INTERACTION SCENARIOS:
1. The Ambiguous Step Query: The USER asks a vague follow-up about a specific number (e.g., ‘Where did that 3 come from?’ or ‘Why did you multiply those two?’). The ASSISTANT must clarify the specific step in the reference solution.
2. The Method Request: The USER asks if there is an alternative mathematical way or formula to solve the exact same problem. The ASSISTANT provides a valid alternative method that yields the same result.
3. The Variable Change (Goalpost Move): Mid-conversation, the USER changes the numbers in the original problem (e.g., ‘What if there were 10 people instead of 5?’). The ASSISTANT recalculates everything based on the new parameters.
4. The Concept Pivot: The USER abruptly asks for the definition of a mathematical concept related to the problem (e.g., ‘By the way, what exactly is a factorial?’). The ASSISTANT explains it clearly, then ties it back to the current problem if applicable.

OUTPUT FORMAT:
Return strictly a valid JSON list of dictionaries. Do not include markdown formatting (like ```json).
Format:
[
{"turn": 1, "role": "user", "content": "…"},
{"turn": 1, "role": "assistant", "content": "…"},
…
]"""

PROMPTS = {"chat": CHAT_PROMPT, "math": MATH_PROMPT}
_OPTIONAL = re.compile("⟦(.*?)⟧", re.S)


def fill_prompt(template: str, values: dict[str, str], rng: random.Random,
                keep: float = 0.5) -> str:
    """Drop each optional ⟦part⟧ with probability 1 - keep, then fill the {PLACEHOLDERS}.
    Plain replacement, not str.format: the prompt's JSON example has braces of its own, and
    a topic or problem may contain braces too (each value is substituted once, never
    re-scanned)."""
    text = _OPTIONAL.sub(lambda m: m.group(1) if rng.random() < keep else "", template)
    pattern = re.compile("|".join(re.escape("{" + k + "}") for k in values))
    return pattern.sub(lambda m: values[m.group(0)[1:-1]], text)


@dataclass
class ChatItem:
    id: str
    kind: str  # "chat" or "math"
    lang: str  # SONAR code, the prompt's TGT_LANG
    source_id: str  # the topic's or problem's id
    num_turns: int
    prompt: str


def make_items(kind: str, inputs: Iterable[dict[str, Any]], languages: list[str],
               seed: int = 0) -> list[ChatItem]:
    """One item per (input, language). `inputs` are read_topics / read_math_problems records
    (quarantined ones are skipped here; the job counts them)."""
    items = []
    for record in inputs:
        if record["quarantine"] is not None:
            continue
        for lang in languages:
            item_id = hashlib.sha256(f"{kind}/{record['id']}/{lang}".encode()).hexdigest()[:20]
            rng = random.Random(f"{seed}/{item_id}")
            num_turns = rng.choice(NUM_TURNS_CHOICES)
            values = {"TGT_LANG": lang, "NUM_TURNS": str(num_turns)}
            if kind == "chat":
                values["TOPIC"] = record["topic"]
            else:
                values.update(PROBLEM=record["problem"], SOLUTION=record["solution"])
            items.append(ChatItem(item_id, kind, lang, record["id"], num_turns,
                                  fill_prompt(PROMPTS[kind], values, rng)))
    return items


# ---- validating a reply ----------------------------------------------------------------------

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def parse_turns(reply: str) -> tuple[list[str] | None, str | None]:
    """(turn texts, None) for a valid reply, or (None, reason).

    Valid: a JSON list of {"role", "content"} objects ("turn" is not checked), roles
    alternating user/assistant from the user and ending with the assistant, every content a
    non-empty string that passes validate.text_problem. A Markdown fence around the JSON,
    which the prompt forbids but models add anyway, is removed first.
    """
    text = reply.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None, "invalid_json"
    if not isinstance(data, list) or not data:
        return None, "not_a_list"
    turns = []
    for n, turn in enumerate(data):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            return None, "bad_turn"
        if turn["role"] != ("user", "assistant")[n % 2]:
            return None, "bad_role_order"
        content = turn["content"]
        reason = text_problem(content)
        if reason is not None:
            return None, reason
        if not content.strip():
            return None, "empty_turn"
        turns.append(content)
    if len(turns) % 2:
        return None, "unanswered_turn"
    return turns, None
