"""S3 event notifications from an SQS queue, through boto3 (AWS SQS, or moto / ElasticMQ by URL).

SQS delivers at least once: a received message is hidden for the visibility timeout and comes
back unless deleted, with ``ApproximateReceiveCount`` one higher. ``clipline events`` deletes a
message only once its jobs are committed; a message it cannot parse stays, so the queue's redrive
policy (``maxReceiveCount``) moves it to the dead-letter queue. botocore's errors are translated
once, here:

    queue missing (NonExistentQueue)                   → InvalidSettings (names the URL)
    connect or read timeouts                           → OperationTimeout
    any other client or connection error (after botocore's own retries) → EventSourceUnavailable
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from pipeline.errors import EventSourceUnavailable, InvalidSettings, OperationTimeout
from pipeline.settings import Settings

MISSING = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
MAX_BATCH = 10  # SQS's limit for receive and delete batches
MAX_WAIT_SECONDS = 20  # SQS's longest long poll


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    body: str
    receipt: str
    receive_count: int  # 1 on the first delivery


def make_client(settings: Settings, *, wait_seconds: float = MAX_WAIT_SECONDS) -> Any:
    """One SQS client per process. S3 notifies only queues in the bucket's own region, so the
    region is the S3 one; the read timeout outlasts a long poll."""
    config = Config(
        region_name=settings.s3_region,
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=max(settings.s3_read_timeout_seconds, wait_seconds + 10),
        retries={"mode": "standard", "total_max_attempts": settings.s3_max_attempts},
    )
    return boto3.session.Session().client(
        "sqs", endpoint_url=settings.sqs_endpoint_url, config=config
    )


class SqsSource:
    def __init__(self, client: Any, queue_url: str, *, wait_seconds: int = MAX_WAIT_SECONDS,
                 max_messages: int = MAX_BATCH, visibility_timeout: int | None = None) -> None:
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise ValueError(f"wait_seconds must be 0 to {MAX_WAIT_SECONDS}")
        if not 1 <= max_messages <= MAX_BATCH:
            raise ValueError(f"max_messages must be 1 to {MAX_BATCH}")
        self.client = client
        self.queue_url = queue_url
        self.wait_seconds = wait_seconds
        self.max_messages = max_messages
        self.visibility_timeout = visibility_timeout  # None: the queue's own

    def receive(self) -> list[Message]:
        """Up to ``max_messages`` messages, waiting up to ``wait_seconds`` for the first."""
        args: dict[str, Any] = {
            "QueueUrl": self.queue_url, "MaxNumberOfMessages": self.max_messages,
            "WaitTimeSeconds": self.wait_seconds,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
        }
        if self.visibility_timeout is not None:
            args["VisibilityTimeout"] = self.visibility_timeout
        with self._translated("receive from"):
            found = self.client.receive_message(**args).get("Messages", [])
        return [Message(id=m["MessageId"], body=m.get("Body", ""), receipt=m["ReceiptHandle"],
                        receive_count=int(m.get("Attributes", {})
                                          .get("ApproximateReceiveCount", 1)))
                for m in found]

    def delete(self, receipts: Sequence[str]) -> list[str]:
        """Delete the messages, ten per request. Returns the receipts SQS refused (an expired
        receipt: the message comes back, and its jobs fold into the ones already recorded)."""
        refused: list[str] = []
        receipts = list(dict.fromkeys(receipts))  # SQS refuses a batch that names one twice
        for start in range(0, len(receipts), MAX_BATCH):
            chunk = receipts[start:start + MAX_BATCH]
            entries = [{"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(chunk)]
            with self._translated("delete from"):
                answer = self.client.delete_message_batch(QueueUrl=self.queue_url,
                                                          Entries=entries)
            refused += [chunk[int(f["Id"])] for f in answer.get("Failed", [])]
        return refused

    def redrive_max_receives(self) -> int | None:
        """The ``maxReceiveCount`` of the queue's redrive policy; None when it has none.
        Also the start-up check that the queue exists and can be read."""
        with self._translated("read the attributes of"):
            attributes = self.client.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]
            ).get("Attributes", {})
        policy = attributes.get("RedrivePolicy")
        if not policy:
            return None
        return int(json.loads(policy)["maxReceiveCount"])

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        where = f"could not {what} the SQS queue {self.queue_url}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = f"{where}: {code} {error.get('Message', '')}".strip()
            if code in MISSING:
                raise InvalidSettings(f"CLIPLINE_SQS_QUEUE_URL: {message}") from exc
            raise EventSourceUnavailable(message) from exc
        except (ConnectTimeoutError, ReadTimeoutError) as exc:
            raise OperationTimeout(f"{where}: {exc}") from exc
        except BotoCoreError as exc:
            raise EventSourceUnavailable(f"{where}: {exc}") from exc
