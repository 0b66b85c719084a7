"""The request and answer shapes of direct uploads (``pipeline.api.uploads``), and the OpenAPI
description of ``POST /v1/jobs``' multipart body, which its JSON route carries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.api.schemas import SourceView

ContentType = Literal["image/jpeg", "image/png", "image/webp", "image/tiff", "image/bmp",
                      "image/gif"]


class UploadRequest(BaseModel):
    """The image a client is about to PUT itself."""

    model_config = ConfigDict(extra="forbid")

    content_type: ContentType = Field(description="The image's type; sent again as the PUT's "
                                      "Content-Type. image/gif only where the deployment "
                                      "accepts GIFs (422 `unsupported_format` otherwise).")
    size: int = Field(ge=1, description="The image's length in bytes, exactly: the PUT must "
                      "send that many. At most CLIPLINE_MAX_INPUT_BYTES (413 "
                      "`upload_too_large`).")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="The "
                               "image's SHA-256, hex: S3 then refuses a PUT of other bytes.")


class UploadView(BaseModel):
    """A presigned PUT, and the source to submit once it has succeeded."""

    url: str = Field(description="PUT the image here, before `expires_at`.")
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(description="Send exactly these headers with the PUT: "
                                    "they are signed (S3 answers 403 to a PUT without them, or "
                                    "with another length or type).")
    expires_at: datetime
    max_bytes: int = Field(description="The largest image this deployment takes.")
    source: SourceView = Field(description="Submit a job with this `source` (`POST /v1/jobs`) "
                               "once the PUT has succeeded. Only this tenant may.")


REQUEST_PART = (
    "Optional. The JSON body of a `POST /v1/jobs` without `source` (the image is the source): "
    "`options`, `model`, `priority` or `deadline`, `callback_url`, `output`, as JSON text.")
JOB_FORM: dict[str, Any] = {"requestBody": {"content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "The image itself, at "
                  "most CLIPLINE_UPLOAD_MAX_BYTES (413 `upload_too_large`); stored under the "
                  "tenant's uploads, named by its SHA-256, then the job's source. Not an image "
                  "the decoder reads: 422 with the decoder's reason (`not_an_image`, ...)."},
        "request": {"type": "string", "description": REQUEST_PART}}}}}}}
