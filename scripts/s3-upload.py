"""Upload a folder's images to S3 (or moto, or MinIO), for trying Clipline out by hand.

    .venv/bin/python scripts/s3-upload.py FOLDER s3://bucket/prefix/ [--create BUCKET ...]

The endpoint and credentials come from the usual places: CLIPLINE_S3_ENDPOINT_URL (as the
workers use it) and the AWS_* variables. The source bucket is created when missing, and so is
each --create bucket (the output bucket, say).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import boto3

from pipeline.intake import is_image_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("target", help="s3://bucket/prefix/")
    parser.add_argument("--create", action="append", default=[], metavar="BUCKET",
                        help="another bucket to create if missing (repeatable)")
    args = parser.parse_args()
    bucket, _, prefix = args.target.removeprefix("s3://").partition("/")
    if not args.target.startswith("s3://") or not bucket:
        parser.error("the target must look like s3://bucket/prefix/")
    s3 = boto3.client("s3", endpoint_url=os.environ.get("CLIPLINE_S3_ENDPOINT_URL"))
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for name in {bucket, *args.create} - existing:
        s3.create_bucket(Bucket=name)
    files = sorted(p for p in args.folder.rglob("*") if p.is_file() and is_image_key(p.name))
    for path in files:
        s3.upload_file(str(path), bucket, prefix + path.relative_to(args.folder).as_posix())
    print(f"uploaded {len(files)} image(s) to s3://{bucket}/{prefix}")


if __name__ == "__main__":
    main()
