"""Penny's own Batch API, in OpenAI's shape: ``POST /v1/files`` (``purpose=batch``, a JSONL of
``/v1/chat/completions`` requests with ``custom_id``), ``POST /v1/batches``, ``GET /v1/batches/{id}``,
``GET /v1/files/{id}`` and ``GET /v1/files/{id}/content``. An OpenAI client's batch code works unchanged.

A batch runs in a background thread as ``penny ask --batch`` does (assistant/answering/batch.py): every
request through the cascade locally first, the escalations as one batch to the paid tier's Batch API at
batch prices, each reserved and settled against the key's budget (and its team's). Each line is checked as
``/v1/chat/completions`` checks a request (profile ``penny`` only, the collection readable by the key); a
line that fails goes to the error file with its HTTP status. Files and batches are kept under
``<data_dir>/batches``, readable by the key's user only (404 for anyone else, as for an unknown id). One
process's: behind several API replicas a batch is seen by the replica that took it, and a batch running
when its process stops is not resumed (it is ``failed`` when next read).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Request, get, post
from litestar.datastructures import State, UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, JSONBody

from assistant.api.auth import default_collection, principal_of, require_api_key, require_profile
from assistant.api.chat import PennyChatRequest, completion_of, split_conversation
from assistant.api.errors import ApiError
from assistant.ledger import Principal

log = logging.getLogger("penny.api")

ENDPOINT = "/v1/chat/completions"
_ALIVE: set[str] = set()  # batches this process is running; any other "in_progress" one was orphaned


@dataclass
class FileUpload:
    file: UploadFile
    purpose: str = "batch"


class CreateBatch(msgspec.Struct, forbid_unknown_fields=True):
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None


class BatchStore:
    """Batch files and batch objects as JSON on disk, each with its owner's user id."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, kind: str, object_id: str, suffix: str) -> Path:
        bare = object_id.replace("-", "").replace("_", "")
        if len(object_id) > 64 or not (bare.isascii() and bare.isalnum()):
            raise ApiError(404, f"no {kind[:-1]} {object_id!r}", code="not_found")
        return self.root / kind / f"{object_id}{suffix}"

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_bytes(data)
        temporary.replace(path)

    def put_file(self, owner: int, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        self._write(self._path("files", file_id, ".jsonl"), content)
        meta = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time())}
        meta |= {"filename": filename, "purpose": purpose, "owner": owner}
        self._write(self._path("files", file_id, ".json"), json.dumps(meta).encode())
        return meta

    def file(self, owner: int, file_id: str) -> dict[str, Any]:
        return self._owned("files", file_id, owner)

    def content(self, owner: int, file_id: str) -> bytes:
        self.file(owner, file_id)
        return self._path("files", file_id, ".jsonl").read_bytes()

    def put_batch(self, batch: dict[str, Any]) -> None:
        self._write(self._path("batches", batch["id"], ".json"), json.dumps(batch).encode())

    def batch(self, owner: int, batch_id: str) -> dict[str, Any]:
        batch = self._owned("batches", batch_id, owner)
        if batch["status"] in ("validating", "in_progress") and batch_id not in _ALIVE:
            batch |= {"status": "failed", "failed_at": int(time.time())}
            batch["errors"] = {"data": [{"code": "server_restarted", "message": "the server stopped first"}]}
            self.put_batch(batch)
        return batch

    def _owned(self, kind: str, object_id: str, owner: int) -> dict[str, Any]:
        path = self._path(kind, object_id, ".json")
        data = json.loads(path.read_text("utf-8")) if path.exists() else None
        if data is None or data["owner"] != owner:
            raise ApiError(404, f"no {kind[:-1]} {object_id!r}", code="not_found")
        return data


def public(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "owner"}


def store_of(state: State) -> BatchStore:
    return BatchStore(Path(state.penny.settings.data_dir) / "batches")


@post("/v1/files", guards=[require_api_key], status_code=200)
async def upload_file(
    data: Annotated[FileUpload, Body(media_type=RequestEncodingType.MULTI_PART)],
    request: Request[Any, Any, Any],
    state: State,
) -> dict[str, Any]:
    """A batch input file: JSONL of chat completion requests, each with a ``custom_id``."""
    if data.purpose != "batch":
        raise ApiError(400, "only purpose=batch files are accepted", param="purpose")
    content = await data.file.read()
    principal = principal_of(request)
    meta = store_of(state).put_file(principal.user_id, data.file.filename or "batch.jsonl", "batch", content)
    return public(meta)


@get("/v1/files/{file_id:str}", guards=[require_api_key], sync_to_thread=False)
def get_file(file_id: FromPath[str], request: Request[Any, Any, Any], state: State) -> dict[str, Any]:
    return public(store_of(state).file(principal_of(request).user_id, file_id))


@get(
    "/v1/files/{file_id:str}/content",
    guards=[require_api_key],
    sync_to_thread=False,
    media_type="application/jsonl",
)
def file_content(file_id: FromPath[str], request: Request[Any, Any, Any], state: State) -> bytes:
    return store_of(state).content(principal_of(request).user_id, file_id)


@post("/v1/batches", guards=[require_api_key], status_code=200)
async def create_batch(
    data: JSONBody[CreateBatch], request: Request[Any, Any, Any], state: State
) -> dict[str, Any]:
    """Start a batch on an uploaded file; poll ``GET /v1/batches/{id}`` for its output file."""
    if data.endpoint != ENDPOINT:
        raise ApiError(400, f"endpoint must be {ENDPOINT}", param="endpoint")
    if data.completion_window != "24h":
        raise ApiError(400, "completion_window must be 24h", param="completion_window")
    principal = principal_of(request)
    store = store_of(state)
    store.file(principal.user_id, data.input_file_id)
    if state.penny.cascade.paid is None:
        raise ApiError(400, "batches need the paid tier: the server has none configured", code="no_paid_tier")
    batch = {
        "id": f"batch_{uuid.uuid4().hex[:24]}",
        "object": "batch",
        "endpoint": ENDPOINT,
        "input_file_id": data.input_file_id,
        "completion_window": "24h",
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "errors": None,
        "created_at": int(time.time()),
        "completed_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": data.metadata,
        "owner": principal.user_id,
    }
    store.put_batch(batch)
    _ALIVE.add(batch["id"])
    default = default_collection(request)
    thread = threading.Thread(target=_run, args=(state, store, batch, principal, default), daemon=True)
    await anyio.to_thread.run_sync(thread.start)
    return public(batch)


@get("/v1/batches/{batch_id:str}", guards=[require_api_key], sync_to_thread=False)
def get_batch(batch_id: FromPath[str], request: Request[Any, Any, Any], state: State) -> dict[str, Any]:
    return public(store_of(state).batch(principal_of(request).user_id, batch_id))


BATCH_ROUTES = [upload_file, get_file, file_content, create_batch, get_batch]


def _run(state: State, store: BatchStore, batch: dict[str, Any], principal: Principal, default: str) -> None:
    """The batch, start to end, in its own thread; a crash fails it with the reason."""
    try:
        batch["status"] = "in_progress"
        store.put_batch(batch)
        content = store.content(principal.user_id, batch["input_file_id"]).decode("utf-8")
        output, errors = _answer_lines(state, content, principal, default)
        user = principal.user_id
        if output:
            batch["output_file_id"] = store.put_file(user, "output.jsonl", "batch_output", _jsonl(output))[
                "id"
            ]
        if errors:
            batch["error_file_id"] = store.put_file(user, "errors.jsonl", "batch_output", _jsonl(errors))[
                "id"
            ]
        batch["request_counts"] = {
            "total": len(output) + len(errors),
            "completed": len(output),
            "failed": len(errors),
        }
        batch |= {"status": "completed", "completed_at": int(time.time())}
    except Exception as exc:
        log.exception("batch %s failed", batch["id"])
        batch |= {
            "status": "failed",
            "errors": {"data": [{"code": "server_error", "message": str(exc)[:300]}]},
        }
    finally:
        store.put_batch(batch)
        _ALIVE.discard(batch["id"])


def _answer_lines(
    state: State, content: str, principal: Principal, default: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each line checked and answered locally first, then the escalations as one batch; the output and
    error files' lines, in OpenAI's shape."""
    from assistant.answering.batch import BatchEscalation
    from assistant.answering.escalation import Pending
    from assistant.paid import BatchClient

    penny = state.penny
    cascade = penny.cascade
    paid = penny.settings.paid
    client = BatchClient(
        cascade.paid, poll_interval_s=paid.batch_poll_interval_s, max_wait_s=paid.batch_max_wait_s
    )
    batch = BatchEscalation(cascade, client)
    errors: list[dict[str, Any]] = []
    firsts: list[tuple[str, Any]] = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        custom_id = f"line-{number}"
        try:
            row = json.loads(line)
            custom_id = str(row.get("custom_id") or custom_id)
            if row.get("url") != ENDPOINT or row.get("method", "POST") != "POST":
                raise ApiError(400, f"each line must POST to {ENDPOINT}", param="url")
            request = msgspec.convert(row.get("body"), PennyChatRequest)
            if request.model != "penny":
                raise ApiError(400, "a batch runs the cascade: model must be penny", param="model")
            require_profile(principal, "penny")
            question, history = split_conversation(request)
            name = request.collection or default
            charged = penny.ledger.authorize_collection(principal, name, open_if_unowned=name == default)
            first = batch.local_first(
                question, request_id=uuid.uuid4().hex, collection=name, principal=charged, history=history
            )
            firsts.append((custom_id, first))
        except Exception as exc:  # one bad line fails alone
            errors.append(_error_line(custom_id, exc))
    pending = [first for _, first in firsts if isinstance(first, Pending)]
    asked = iter(batch.run(pending))
    output = []
    for custom_id, first in firsts:
        answer = next(asked) if isinstance(first, Pending) else first
        output.append(_output_line(custom_id, answer))
    return output, errors


def _output_line(custom_id: str, answer: Any) -> dict[str, Any]:
    body = completion_of(answer, "penny")
    response = {"status_code": 200, "request_id": answer.request_id, "body": body}
    return {
        "id": f"batch_req_{uuid.uuid4().hex[:24]}",
        "custom_id": custom_id,
        "response": response,
        "error": None,
    }


def _error_line(custom_id: str, exc: Exception) -> dict[str, Any]:
    """The error file's line for a request that failed alone, with the status the live route would give."""
    from assistant.api.errors import api_error_of
    from assistant.errors import PennyError

    if isinstance(exc, ApiError):
        error = exc
    elif isinstance(exc, PennyError):
        error = api_error_of(exc)
    elif isinstance(exc, (ValueError, msgspec.ValidationError)):  # not JSON, or not a chat request
        error = ApiError(400, f"not a chat completion request: {exc}"[:300])
    else:
        log.exception("batch line %s failed", custom_id, exc_info=exc)
        error = ApiError(500, "internal error; see the server log", kind="server_error")
    response = {"status_code": error.status, "body": error.body()}
    return {
        "id": f"batch_req_{uuid.uuid4().hex[:24]}",
        "custom_id": custom_id,
        "response": response,
        "error": None,
    }


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
