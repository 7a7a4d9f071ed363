"""The OpenAI wire module: SSE out and back in, and lenient reading of what other servers send."""

from __future__ import annotations

import httpx
import msgspec
import pytest
from httpx_sse import SSEError
from msgspec import UNSET

from assistant.openai_wire import (
    SSE_DONE,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    StreamOptions,
    Timings,
    Usage,
    WireFormatError,
    chat_messages,
    decode_chunk,
    decode_completion,
    encode_sse,
    iter_chunks,
)


def event_stream(body: bytes, content_type: str = "text/event-stream") -> httpx.Response:
    return httpx.Response(200, headers={"content-type": content_type}, content=body)


def test_sse_encode_then_decode_gives_back_the_same_chunks() -> None:
    chunks = [
        ChatCompletionChunk(
            id="chatcmpl-1", created=7, model="m", choices=[ChunkChoice(delta=Delta(role="assistant"))]
        ),
        ChatCompletionChunk(
            id="chatcmpl-1", created=7, model="m", choices=[ChunkChoice(delta=Delta(content="Zoë "))]
        ),
        ChatCompletionChunk(
            id="chatcmpl-1",
            created=7,
            model="m",
            choices=[ChunkChoice(finish_reason="stop", logprobs=ChoiceLogprobs.of([-0.25, -1.5]))],
            usage=Usage.of(12, 2),
            timings=Timings(prompt_n=12, predicted_n=2, total_ms=80.5),
        ),
    ]
    body = b"".join(encode_sse(chunk) for chunk in chunks) + SSE_DONE
    assert body.startswith(b'data: {"id": "chatcmpl-1", ') and body.endswith(b"\n\ndata: [DONE]\n\n")
    assert body.count(b"\n\n") == 4
    decoded = list(iter_chunks(event_stream(body + encode_sse(chunks[1]))))  # nothing after [DONE] is read
    assert decoded == chunks
    assert decoded[1].choices[0].delta.text == "Zoë "
    assert decoded[2].choices[0].logprobs is not None
    assert decoded[2].choices[0].logprobs.values() == [-0.25, -1.5]


def test_encoding_leaves_out_what_is_not_set() -> None:
    first = ChatCompletionChunk(
        id="c", created=1, model="m", choices=[ChunkChoice(delta=Delta(role="assistant"))]
    )
    assert encode_sse(first) == (
        b'data: {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": '
        b'[{"index": 0, "delta": {"role": "assistant"}, "logprobs": null, "finish_reason": null}]}\n\n'
    )
    request = ChatCompletionRequest(
        messages=chat_messages([{"role": "user", "content": "hi"}]),
        model="gpt-4o-mini",
        temperature=0.0,
        stream=True,
        stream_options=StreamOptions(include_usage=True),
    )
    assert msgspec.json.encode(request) == (
        b'{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini","stream":true,'
        b'"stream_options":{"include_usage":true},"temperature":0.0}'
    )


def test_pennys_scored_tail_extension_travels_in_the_request_and_the_finishing_chunk() -> None:
    request = ChatCompletionRequest(
        messages=chat_messages([{"role": "user", "content": "Q: hi?"}]), scored_tail="hi?"
    )
    assert b'"scored_tail":"hi?"' in msgspec.json.encode(request)
    final = decode_chunk(
        b'{"choices": [{"delta": {}, "finish_reason": "stop", "scored_tail_logprobs": [-0.5, -1.25]}]}'
    )
    assert final.choices[0].scored_tail_logprobs == [-0.5, -1.25]
    assert (
        decode_chunk(b'{"choices": [{"delta": {}, "finish_reason": "stop"}]}').choices[0].scored_tail_logprobs
        is UNSET
    )


def test_a_chunk_with_unknown_and_missing_fields_decodes() -> None:
    chunk = decode_chunk(
        '{"choices":[{"index":0,"delta":{"content":"Blue","reasoning_content":null},'
        '"logprobs":{"content":[{"id":17,"token":"Blue","bytes":[66,108,117,101],"logprob":-0.5,'
        '"top_logprobs":[{"id":17,"token":"Blue","bytes":null,"logprob":-0.5}]}],"refusal":null},'
        '"finish_reason":null,"stop_reason":null}],"system_fingerprint":"fp_1","created":"1700000000"}'
    )
    assert chunk.id == "" and chunk.model is None and chunk.created == 1_700_000_000
    [choice] = chunk.choices
    assert choice.delta.text == "Blue" and choice.finish_reason is None
    assert choice.logprobs is not None and choice.logprobs.values() == [-0.5]
    assert not chunk.usage and not chunk.timings and chunk.error_message is None


def test_a_usage_only_chunk_decodes() -> None:
    chunk = decode_chunk(
        b'{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
        b'"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14,'
        b'"prompt_tokens_details":{"cached_tokens":8},"completion_tokens_details":{"reasoning_tokens":0}}}'
    )
    assert chunk.choices == [] and chunk.usage
    assert (chunk.usage.prompt_tokens, chunk.usage.completion_tokens, chunk.usage.total_tokens) == (12, 2, 14)
    assert chunk.usage.cached_prompt_tokens == 8
    # OpenAI's own chunks carry "usage": null until the last one.
    assert decode_chunk('{"choices":[],"usage":null}').usage is None


def test_an_error_event_is_told_apart_from_a_chunk() -> None:
    detail = decode_chunk('{"error":{"message":"model crashed","type":"server_error","code":500}}')
    assert detail.error_message == "model crashed" and detail.choices == []
    assert decode_chunk('{"error":"out of memory"}').error_message == "out of memory"


def test_what_is_not_the_wire_format_raises_wire_format_error_with_the_data() -> None:
    with pytest.raises(WireFormatError) as not_json:
        decode_chunk('{"choices": [{"delta": ')
    assert not_json.value.data == '{"choices": [{"delta": '
    with pytest.raises(WireFormatError):
        decode_chunk('{"choices":[],"usage":{"prompt_tokens":3}}')  # usage without completion_tokens
    with pytest.raises(WireFormatError, match="missing required field `choices`"):
        decode_completion(b'{"object":"chat.completion"}')  # no choices
    with pytest.raises(WireFormatError):
        list(iter_chunks(event_stream(b"data: [1, 2]\n\n")))
    with pytest.raises(SSEError):
        list(iter_chunks(event_stream(b"<html>proxy error</html>", "text/html")))


def test_a_completion_decodes_leniently() -> None:
    completion = decode_completion(
        b'{"id":"c","object":"chat.completion","created":1,"model":null,"service_tier":"default",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"France.","refusal":null},'
        b'"finish_reason":"stop"}]}'
    )
    assert completion.model is None and not completion.usage
    assert completion.choices[0].message.content == "France."
    assert completion.choices[0].logprobs is None
