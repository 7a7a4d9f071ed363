"""HTTP ingestion: upload documents into a collection as a job, follow the job, delete a document.

``POST /v1/collections/{name}/documents`` (multipart: one or many ``files``, optional ``team``) checks
every file's type (the loaders' own list; 415) and size (413), checks write access, spools the files under
the data dir and queues a job for the process's ingest worker (the API process owns the embedded index);
it answers 202 with the job. ``GET /v1/jobs/{id}`` reports it, to its creator and the admin key only (404
for anyone else). ``DELETE /v1/collections/{name}/documents/{source}`` removes one document's chunks.

Write access (``Ledger.authorize_collection_write``): members of the owning team; a new collection is
claimed for the caller's team; an existing unowned collection, the default included, is the operator's
(the admin key). Filenames are untrusted: the document's ``source`` is the name's last path component,
and the spooled copy gets a sanitised name inside the job's own folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import anyio
from litestar import Request, Response, delete, get, post
from litestar.datastructures import State, UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath

from assistant.api.auth import acting_principal, default_collection, ledger_of, require_api_or_admin_key
from assistant.api.errors import ApiError
from assistant.ledger import IngestJob, Principal
from assistant.settings import Settings
from index.loaders import LOADERS
from index.store import list_collection_names, validate_collection_name

MAX_SOURCE_CHARS = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Upload:
    files: list[UploadFile] = field(default_factory=list)
    team: str | None = None


def source_name(filename: str | None) -> str:
    """The document's name: the upload's last path component, printable characters only."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if name in ("", ".", "..") or len(name) > MAX_SOURCE_CHARS:
        message = f"each file needs a name of 1-{MAX_SOURCE_CHARS} characters (got {filename!r})"
        raise ApiError(400, message, param="files")
    return name


def spool_name(source: str) -> str:
    """A safe file name on disk with the source's suffix (the loader is chosen by suffix)."""
    suffix = Path(source).suffix.lower()
    stem = _UNSAFE.sub("_", Path(source).stem).strip("._")[:100] or "document"
    return f"{stem}{suffix}"


def job_body(job: IngestJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "object": "ingest_job",
        "collection": job.collection,
        "status": job.status,
        "files": job.files,
        "error": job.error,
        "created_at": job.created_at.isoformat() + "Z",
        "started_at": job.started_at.isoformat() + "Z" if job.started_at else None,
        "finished_at": job.finished_at.isoformat() + "Z" if job.finished_at else None,
    }


def _collection_name(name: str) -> str:
    try:
        return validate_collection_name(name)
    except ValueError as exc:
        raise ApiError(400, str(exc), param="name") from None


async def _authorize_write(
    request: Request[Any, Any, Any], name: str, *, exists: bool, team: str | None = None
) -> Principal | None:
    """The principal writing (None: the admin key), once allowed to write ``name``."""
    principal = acting_principal(request)
    ledger = ledger_of(request)
    if principal is None:
        if team is not None:
            await anyio.to_thread.run_sync(ledger.claim_collection, name, team)
        return None
    await anyio.to_thread.run_sync(
        lambda: ledger.authorize_collection_write(principal, name, exists=exists, team=team)
    )
    return principal


async def _checked_files(upload: Upload, settings: Settings) -> list[tuple[str, bytes]]:
    """(source name, bytes) of every file; 400 for none, 415 for a type no loader reads, 413 when too big."""
    if not upload.files:
        raise ApiError(400, "no files: send one or more multipart parts named 'files'", param="files")
    limit = settings.ingest.max_file_bytes
    checked: list[tuple[str, bytes]] = []
    for upload_file in upload.files:
        if not isinstance(upload_file, UploadFile):
            raise ApiError(400, "'files' parts must be files (with a filename)", param="files")
        source = source_name(upload_file.filename)
        suffix = Path(source).suffix.lower()
        if suffix not in LOADERS:
            raise ApiError(
                415,
                f"{source}: unsupported file type {suffix or '(none)'}; supported: {', '.join(LOADERS)}",
                kind="invalid_request_error",
                param="files",
                code="unsupported_file_type",
            )
        content = await upload_file.read(limit + 1)
        if len(content) > limit:
            raise ApiError(413, f"{source}: larger than {limit} bytes (ingest.max_file_bytes)", param="files")
        checked.append((source, content))
    return checked


async def upload_documents(
    name: FromPath[str],
    data: Annotated[Upload, Body(media_type=RequestEncodingType.MULTI_PART)],
    request: Request[Any, Any, Any],
    state: State,
) -> Response[Any]:
    """Upload files (txt, md, html, pdf, docx) into a collection: a job indexes them; poll /v1/jobs/{id}."""
    name = _collection_name(name)
    penny = state.penny
    files = await _checked_files(data, penny.settings)
    team = (data.team or "").strip() or None
    # The default collection is the operator's even before anything is in it: no key may claim it.
    exists = name == default_collection(request) or name in await anyio.to_thread.run_sync(
        list_collection_names, penny.chroma
    )
    principal = await _authorize_write(request, name, exists=exists, team=team)
    ledger = ledger_of(request)
    worker = penny.ingest_worker

    def queue() -> IngestJob:
        job = ledger.create_job(principal, name, [source for source, _ in files], owner=worker.owner)
        spooled: list[tuple[Path, str]] = []
        for position, (source, content) in enumerate(files):
            folder = worker.job_dir(job.id) / f"{position:04d}"
            folder.mkdir(parents=True)
            path = folder / spool_name(source)
            path.write_bytes(content)
            spooled.append((path, source))
        worker.submit(job.id, spooled)
        return job

    job = await anyio.to_thread.run_sync(queue)
    return Response(job_body(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@get("/v1/jobs/{job_id:str}", guards=[require_api_or_admin_key], sync_to_thread=True)
def get_job(job_id: FromPath[str], request: Request[Any, Any, Any]) -> dict[str, Any]:
    """An ingest job's state and per-file results (its creator and the admin key only; 404 otherwise)."""
    return job_body(ledger_of(request).job(job_id, acting_principal(request)))


@delete(
    "/v1/collections/{name:str}/documents/{source:str}",
    status_code=200,
    guards=[require_api_or_admin_key],
)
async def delete_document(
    name: FromPath[str], source: FromPath[str], request: Request[Any, Any, Any], state: State
) -> dict[str, Any]:
    """Remove one document (by its source name) and all its chunks from a collection."""
    name = _collection_name(name)
    await _authorize_write(request, name, exists=True)
    penny = state.penny

    def remove() -> int:
        if name not in list_collection_names(penny.chroma):  # never create it just to find it empty
            return 0
        return int(penny.ingester(name).delete_source(source))

    deleted = await anyio.to_thread.run_sync(remove)
    if not deleted:
        message = f"no document {source!r} in collection {name!r}"
        raise ApiError(404, message, param="source", code="not_found")
    return {"collection": name, "source": source, "deleted_chunks": deleted}


def ingest_routes(settings: Settings) -> list[Any]:
    """The routes, the upload's body limit raised to ``ingest.max_request_bytes`` (the app's 1 MB stays
    for every other route)."""
    upload = post(
        "/v1/collections/{name:str}/documents",
        guards=[require_api_or_admin_key],
        request_max_body_size=settings.ingest.max_request_bytes,
        status_code=202,
    )(upload_documents)
    return [upload, get_job, delete_document]
