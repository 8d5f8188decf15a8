"""Synthetic chats against a real HTTP server on 127.0.0.1 that plays the chat endpoint."""

import json
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines.synthesize import EndpointConfig, SynthConfig, run
import samples
from pipelines.counts import StageCounts
from pipelines.chat_endpoint import ChatClient, EndpointError, EndpointUnavailable
from pipelines.readers.chat_inputs import read_topics
from pipelines.synthesize import ChatStore, request_chats
from pipelines.synthetic_chats import (CHAT_PROMPT, MATH_PROMPT, NUM_TURNS_CHOICES, fill_prompt,
                                       make_items, parse_turns)

MAX_BODY = 1 << 20
GOOD = [{"turn": 1, "role": "user", "content": "Bonjour ?"},
        {"turn": 1, "role": "assistant", "content": "Bonjour ! Comment puis-je aider ?"}]


class Endpoint(ThreadingHTTPServer):
    """Replies by the prompt's language: fra_Latn good JSON, deu_Latn fenced JSON, spa_Latn
    not JSON, ita_Latn wrong role order, por_Latn a 500 on the first try then good JSON,
    nld_Latn always 503, pol_Latn a 400; the key "wrong" a 401."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        server: Endpoint = self.server
        length = int(self.headers.get("Content-Length", 0))
        if self.path != "/v1/chat/completions" or length > MAX_BODY:
            return self._send(413 if length > MAX_BODY else 404, {"error": "bad request"})
        body = json.loads(self.rfile.read(length))
        if self.headers.get("Authorization") == "Bearer wrong":
            return self._send(401, {"error": "invalid api key"})
        prompt = body["messages"][0]["content"]
        with server.lock:
            server.requests.append({"model": body["model"], "prompt": prompt,
                                    "auth": self.headers.get("Authorization")})
            tries = sum(r["prompt"] == prompt for r in server.requests)
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            threading.Event().wait(0.02)  # let requests overlap
            lang = prompt.split("Target Language: ")[1].split("\n")[0]
            reply = {"fra_Latn": json.dumps(GOOD), "deu_Latn": "```json\n" + json.dumps(GOOD)
                     + "\n```", "spa_Latn": "Here is your conversation!",
                     "ita_Latn": json.dumps(GOOD[::-1]), "por_Latn": json.dumps(GOOD)}.get(lang)
            if lang == "nld_Latn" or (lang == "por_Latn" and tries == 1):
                return self._send(503 if lang == "nld_Latn" else 500, {"error": "busy"})
            if lang == "pol_Latn":
                return self._send(400, {"error": "no"})
            self._send(200, {"choices": [{"message": {"role": "assistant", "content": reply}}]})
        finally:
            with server.lock:
                server.in_flight -= 1


@pytest.fixture
def endpoint():
    server = Endpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_fill_prompt_keeps_or_drops_each_optional_part():
    values = {"TOPIC": "Food/{braces}", "TGT_LANG": "fra_Latn", "NUM_TURNS": "6"}
    full = fill_prompt(CHAT_PROMPT, values, random.Random(0), keep=1.0)
    bare = fill_prompt(CHAT_PROMPT, values, random.Random(0), keep=0.0)
    assert "⟦" not in full and "⟧" not in full and "{TOPIC}" not in full
    assert "- Topic: Food/{braces}\n" in full
    assert "Fluent, natural fra_Latn." in full and "Approximately 6 turns" in full
    for optional in ("3. Cultural Relevance", "- Length Constraints", "- Unconventional"):
        assert optional in full and optional not in bare
    assert '{"turn": 1, "role": "user", "content": "…"}' in bare
    math = fill_prompt(MATH_PROMPT, {"PROBLEM": "1+1?", "SOLUTION": "2", "TGT_LANG": "deu_Latn",
                                     "NUM_TURNS": "4"}, random.Random(0), keep=0.0)
    assert "- Math Problem: 1+1?\n- Reference Solution: 2\n" in math
    assert "Direct Answer Constraint" not in math


def test_items_are_deterministic_and_draw_turns_from_the_paper_set():
    topics = [{"id": f"t{i}", "topic": f"Topic {i}", "quarantine": None} for i in range(40)]
    topics.append({"id": None, "topic": None, "quarantine": "missing_topic"})
    items = make_items("chat", topics, ["fra_Latn", "deu_Latn"])
    assert len(items) == 80 and len({i.id for i in items}) == 80
    assert {i.num_turns for i in items} == set(NUM_TURNS_CHOICES)
    again = make_items("chat", topics, ["fra_Latn", "deu_Latn"])
    assert [(i.id, i.prompt) for i in items] == [(i.id, i.prompt) for i in again]
    assert all(f"Approximately {i.num_turns} turns" in i.prompt for i in items)
    # Optional parts are really drawn: both kept and dropped occur.
    kept = sum("Cultural Relevance" in i.prompt for i in items)
    assert 0 < kept < 80


@pytest.mark.parametrize("reply, expected", [
    (json.dumps(GOOD), ([GOOD[0]["content"], GOOD[1]["content"]], None)),
    ("```json\n" + json.dumps(GOOD) + "\n```", ([GOOD[0]["content"], GOOD[1]["content"]], None)),
    ("not json", (None, "invalid_json")),
    (json.dumps({"turn": 1}), (None, "not_a_list")),
    (json.dumps([]), (None, "not_a_list")),
    (json.dumps(GOOD[::-1]), (None, "bad_role_order")),
    (json.dumps(GOOD[:1]), (None, "unanswered_turn")),
    (json.dumps([GOOD[0], {"role": "assistant"}]), (None, "bad_turn")),
    (json.dumps([GOOD[0], {"role": "assistant", "content": 3}]), (None, "non_string_text")),
    (json.dumps([GOOD[0], {"role": "assistant", "content": " "}]), (None, "empty_turn")),
    (json.dumps([GOOD[0], {"role": "assistant", "content": "a\x07b"}]), (None, "control_chars")),
    ('[{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "x"}]',
     (None, "invalid_unicode")),
])
def test_parse_turns(reply, expected):
    assert parse_turns(reply) == expected


def test_client_retries_then_fails_with_the_status(endpoint):
    url = f"http://127.0.0.1:{endpoint.server_port}/v1"
    client = ChatClient(url, "m", "secret", timeout=5, retries=2, backoff=0.01)
    prompt = CHAT_PROMPT.replace("{TGT_LANG}", "nld_Latn")
    with pytest.raises(EndpointUnavailable, match=rf"chat endpoint {url}/chat/completions "
                                                  r"answered HTTP 503 .*after 2 retries"):
        client.complete(prompt)
    assert len(endpoint.requests) == 3  # one try and two retries
    assert endpoint.requests[0]["auth"] == "Bearer secret"
    with pytest.raises(EndpointError, match="http_400"):  # this item's fault: not retried
        client.complete(CHAT_PROMPT.replace("{TGT_LANG}", "pol_Latn"))
    assert len(endpoint.requests) == 4
    with pytest.raises(EndpointUnavailable, match=r"HTTP 401 .*is the API key right"):
        ChatClient(url, "m", "wrong", retries=2, backoff=0.01).complete(prompt)
    assert len(endpoint.requests) == 4  # refused before it was read: never retried


def test_generate_bounds_concurrency(endpoint):
    topics = [{"id": f"t{i}", "topic": f"Topic {i}", "quarantine": None} for i in range(12)]
    items = make_items("chat", topics, ["fra_Latn"])
    client = ChatClient(f"http://127.0.0.1:{endpoint.server_port}/v1", "m", backoff=0.01)
    counts = StageCounts("generate")
    rows = list(request_chats(items, client, concurrency=3, counts=counts))
    assert [r["id"] for r in rows] == [i.id for i in items]
    assert all(r["quarantine"] is None for r in rows)
    assert 1 < endpoint.max_in_flight <= 3
    assert counts.tally == {"chat_chats": 12, "turns": 24}


def _synth(endpoint, tmp_path, monkeypatch, langs: list[str], **endpoint_kw) -> SynthConfig:
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{endpoint.server_port}/v1")
    monkeypatch.setenv("OPENAI_MODEL", "test-model")
    monkeypatch.setenv("MIMIR_TEST_KEY", "k")
    kw = {"api_key_env": "MIMIR_TEST_KEY", "concurrency": 4, "retries": 1, "backoff": 0.01,
          "timeout": 5, **endpoint_kw}
    return SynthConfig(kind="chat", input=str(samples.ROOT / "everyday-conversations"),
                       languages=langs, output=str(tmp_path / "chats"), flush_every=5,
                       endpoint=EndpointConfig(**kw))


def test_job_quarantines_bad_replies_and_resumes(endpoint, tmp_path, monkeypatch):
    langs = ["fra_Latn", "deu_Latn", "spa_Latn", "ita_Latn", "por_Latn"]
    cfg = _synth(endpoint, tmp_path, monkeypatch, langs)
    read, gen = run(cfg)
    # 2 distinct topics x 5 languages; por_Latn succeeds on its retry.
    assert read.tally == {"items": 10, "already_done": 0}
    assert gen.rows_out == 6 and gen.tally["chat_chats"] == 6
    assert gen.quarantined == {"invalid_json": 2, "bad_role_order": 2}
    assert len(endpoint.requests) == 4 * 2 + 2 * 2  # por twice each
    assert {r["model"] for r in endpoint.requests} == {"test-model"}
    table = ChatStore(str(tmp_path / "chats")).read()
    assert table.num_rows == 10 and len(ChatStore(str(tmp_path / "chats")).parts()) == 2
    # A rerun finds everything done and sends nothing.
    before = len(endpoint.requests)
    read2, gen2 = run(cfg)
    assert read2.tally == {"items": 10, "already_done": 10} and gen2.rows_in == 0
    assert len(endpoint.requests) == before
    # The output reads as instruction conversations, quarantine kept.
    from pipelines.readers.conversations import read_synthetic
    conv = read_synthetic(str(tmp_path / "chats"))
    assert conv.num_rows == 10 and set(conv.column("source").to_pylist()) == {"synthetic_chat"}
    assert conv.column("quarantine").null_count == 6
    good = [t for t, q in zip(conv.column("turns").to_pylist(),
                              conv.column("quarantine").to_pylist()) if q is None]
    assert good == [[GOOD[0]["content"], GOOD[1]["content"]]] * 6


def test_a_wrong_key_or_a_dead_endpoint_stops_the_job_and_records_nothing(endpoint, tmp_path,
                                                                         monkeypatch):
    cfg = _synth(endpoint, tmp_path, monkeypatch, ["fra_Latn"])
    monkeypatch.setenv("MIMIR_TEST_KEY", "wrong")
    with pytest.raises(EndpointUnavailable, match=r"HTTP 401 .*is the API key right"):
        run(cfg)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", dead)
    with pytest.raises(EndpointUnavailable, match=rf"chat endpoint {dead}/chat/completions "
                                                  "unreachable after 1 retries"):
        run(cfg)
    assert ChatStore(cfg.output).parts() == []
    # With the key fixed and the endpoint back, the rerun asks for every item.
    monkeypatch.setenv("MIMIR_TEST_KEY", "k")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{endpoint.server_port}/v1")
    _, gen = run(cfg)
    assert gen.rows_out == 2 and ChatStore(cfg.output).read().num_rows == 2


def test_an_endpoint_failing_mid_run_keeps_the_answers_already_paid_for(endpoint, tmp_path,
                                                                       monkeypatch):
    cfg = _synth(endpoint, tmp_path, monkeypatch, ["fra_Latn", "nld_Latn"], concurrency=1)
    items = make_items("chat", read_topics(cfg.input, None), cfg.languages, cfg.seed)
    first_failure = next(k for k, i in enumerate(items) if i.lang == "nld_Latn")
    assert first_failure > 0
    with pytest.raises(EndpointUnavailable, match="HTTP 503"):
        run(cfg)
    # Everything answered before the failure is kept (and a request already in flight
    # when it came), all of it good: nothing was quarantined for the endpoint's failure.
    kept = ChatStore(cfg.output).read()
    kept_ids = kept.column("id").to_pylist()
    assert set(kept_ids) >= {i.id for i in items[:first_failure]}
    assert kept.column("quarantine").null_count == len(kept_ids)
    sent = len(endpoint.requests)
    with pytest.raises(EndpointUnavailable):
        run(cfg)  # the rerun asks for the unanswered items only
    asked = {r["prompt"] for r in endpoint.requests[sent:]}
    assert asked and asked <= {i.prompt for i in items if i.id not in kept_ids}


def test_math_job_reads_problems(endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{endpoint.server_port}/v1")
    cfg = SynthConfig(kind="math", input=str(samples.ROOT / "openmathinstruct-2"),
                      languages=["fra_Latn"], output=str(tmp_path / "math"),
                      endpoint=EndpointConfig(model="m", backoff=0.01))
    _, gen = run(cfg)
    assert gen.tally == {"math_chats": 2, "turns": 4}
    prompts = [r["prompt"] for r in endpoint.requests]
    assert any("- Math Problem: What is the value of x if 3x + 5 = 20?" in p for p in prompts)
    with pytest.raises(ValueError, match="yor_Latn"):
        run(SynthConfig(languages=["yor_Latn"], endpoint=EndpointConfig(url="x", model="m")))
