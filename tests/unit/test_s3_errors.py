"""S3's answers, as botocore hands them over, classified by meaning: one case per row of
``s3_store.ANSWERS`` and per fallback. The shapes are AWS's (codes, statuses and messages from
https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList and the
GetObject / HeadObject pages): the XML ``<Error>`` becomes ``response["Error"]`` with every child
element but RequestId and HostId; a HEAD answer has no body, so botocore sets ``Code`` to the
status and ``Message`` to its reason phrase."""

from __future__ import annotations

import http
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline import errors
from pipeline.adapters.storage import s3 as s3_store
from pipeline.adapters.storage.s3 import ANSWERS, Operation, S3Store, row_of, storage_error

WHERE = "s3://photos/shoe.jpg"
OPERATION_NAMES = {"get": "GetObject", "head": "HeadObject", "put": "PutObject",
                   "list": "ListObjectsV2"}
MARKER = {"x-amz-delete-marker": "true", "x-amz-version-id": "UIORUnfndfiufdisojhr398493jfdk"}
KMS_KEY = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@dataclass(frozen=True)
class Recorded:
    """One answer as S3 sends it: status, code, message, the other elements, the headers."""

    operation: Operation
    status: int
    code: str | None  # None: a HEAD answer (no body)
    message: str = ""
    elements: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def client_error(self) -> ClientError:
        if self.code is None:  # botocore's parser for a body-less error
            error = {"Code": str(self.status), "Message": http.HTTPStatus(self.status).phrase}
        else:
            error = {"Code": self.code, "Message": self.message, **self.elements}
        response: Any = {
            "Error": error,
            "ResponseMetadata": {
                "RequestId": "4442587FB7D0A2F9", "HostId": "hzfnPJl3H7ZxgE=",
                "HTTPStatusCode": self.status,
                "HTTPHeaders": {"x-amz-request-id": "4442587FB7D0A2F9",
                                "content-type": "application/xml", **self.headers},
                "RetryAttempts": 0,
            },
        }
        return ClientError(response, OPERATION_NAMES[self.operation])


def head(status: int, **headers: str) -> Recorded:
    return Recorded("head", status, None, headers=headers)


# (id, the answer, the error it must become)
CASES: list[tuple[str, Recorded, type[errors.ClipError]]] = [
    # -- the source is not there, or not as pinned
    ("get-404-NoSuchKey", Recorded("get", 404, "NoSuchKey", "The specified key does not exist.",
                                   {"Key": "shoe.jpg"}), errors.ObjectMissing),
    ("get-404-NoSuchVersion", Recorded("get", 404, "NoSuchVersion",
                                       "The specified version does not exist.",
                                       {"Key": "shoe.jpg", "VersionId": "3HL4kqtJlcpXroDTDmJ"}),
     errors.ObjectMissing),
    ("get-404-NoSuchBucket", Recorded("get", 404, "NoSuchBucket",
                                      "The specified bucket does not exist",
                                      {"BucketName": "photos"}), errors.ObjectMissing),
    ("list-404-NoSuchBucket", Recorded("list", 404, "NoSuchBucket",
                                       "The specified bucket does not exist",
                                       {"BucketName": "photos"}), errors.ObjectMissing),
    ("head-404", head(404), errors.ObjectMissing),
    ("get-404-NoSuchKey-delete-marker",
     Recorded("get", 404, "NoSuchKey", "The specified key does not exist.", {"Key": "shoe.jpg"},
              MARKER), errors.ObjectDeleted),
    ("head-404-delete-marker", head(404, **MARKER), errors.ObjectDeleted),
    ("get-405-MethodNotAllowed-delete-marker",
     Recorded("get", 405, "MethodNotAllowed",
              "The specified method is not allowed against this resource.",
              {"Method": "GET", "ResourceType": "DeleteMarker"},
              {**MARKER, "allow": "DELETE", "last-modified": "Wed, 12 Oct 2009 17:50:00 GMT"}),
     errors.ObjectDeleted),
    ("get-405-MethodNotAllowed-body-only",  # no header: the body still names the delete marker
     Recorded("get", 405, "MethodNotAllowed",
              "The specified method is not allowed against this resource.",
              {"Method": "GET", "ResourceType": "DeleteMarker"}), errors.ObjectDeleted),
    ("head-405-delete-marker", head(405, **MARKER, allow="DELETE"), errors.ObjectDeleted),
    ("get-412-PreconditionFailed",
     Recorded("get", 412, "PreconditionFailed",
              "At least one of the pre-conditions you specified did not hold",
              {"Condition": "If-Match"}), errors.ObjectChanged),
    ("head-412", head(412), errors.ObjectChanged),
    ("get-403-InvalidObjectState-glacier",
     Recorded("get", 403, "InvalidObjectState",
              "The operation is not valid for the object's storage class",
              {"StorageClass": "GLACIER"}), errors.ObjectArchived),
    ("get-403-InvalidObjectState-intelligent-tiering",
     Recorded("get", 403, "InvalidObjectState",
              "The operation is not valid for the object's access tier",
              {"StorageClass": "INTELLIGENT_TIERING", "AccessTier": "ARCHIVE_ACCESS"}),
     errors.ObjectArchived),
    ("get-409-InvalidObjectState-look-alike",  # a known code under another status
     Recorded("get", 409, "InvalidObjectState", "object is in a cold tier"),
     errors.ObjectArchived),
    # -- the output bucket
    ("put-404-NoSuchBucket", Recorded("put", 404, "NoSuchBucket",
                                      "The specified bucket does not exist",
                                      {"BucketName": "cutouts"}), errors.OutputBucketMissing),
    # -- access
    ("get-403-AccessDenied", Recorded("get", 403, "AccessDenied", "Access Denied"),
     errors.AccessDenied),
    ("put-403-AccessDenied", Recorded("put", 403, "AccessDenied", "Access Denied"),
     errors.AccessDenied),
    ("head-403", head(403), errors.AccessDenied),
    ("get-403-AccountProblem", Recorded("get", 403, "AccountProblem",
                                        "There is a problem with your AWS account that "
                                        "prevents the action from completing successfully."),
     errors.AccessDenied),
    ("get-403-AllAccessDisabled", Recorded("get", 403, "AllAccessDisabled",
                                           "All access to this Amazon S3 resource has been "
                                           "disabled."), errors.AccessDenied),
    ("get-403-InvalidAccessKeyId", Recorded("get", 403, "InvalidAccessKeyId",
                                            "The AWS Access Key Id you provided does not exist "
                                            "in our records.", {"AWSAccessKeyId": "AKIA0"}),
     errors.AccessDenied),
    ("get-403-SignatureDoesNotMatch", Recorded("get", 403, "SignatureDoesNotMatch",
                                               "The request signature we calculated does not "
                                               "match the signature you provided."),
     errors.AccessDenied),
    ("get-403-InvalidSecurity", Recorded("get", 403, "InvalidSecurity",
                                         "The provided security credentials are not valid."),
     errors.AccessDenied),
    ("get-403-InvalidPayer", Recorded("get", 403, "InvalidPayer",
                                      "All access to this object has been disabled."),
     errors.AccessDenied),
    ("get-403-NotSignedUp", Recorded("get", 403, "NotSignedUp",
                                     "Your account is not signed up for the Amazon S3 service."),
     errors.AccessDenied),
    ("get-403-unknown-code", Recorded("get", 403, "QuotaExceeded", "over quota"),
     errors.AccessDenied),
    ("get-400-InvalidToken", Recorded("get", 400, "InvalidToken",
                                      "The provided token is malformed or otherwise invalid."),
     errors.AccessDenied),
    ("get-400-KMS.DisabledException", Recorded("get", 400, "KMS.DisabledException",
                                               f"{KMS_KEY} is disabled."), errors.AccessDenied),
    ("get-400-KMS.KMSInvalidStateException",
     Recorded("get", 400, "KMS.KMSInvalidStateException", f"{KMS_KEY} is pending deletion."),
     errors.AccessDenied),
    ("put-400-KMS.NotFoundException", Recorded("put", 400, "KMS.NotFoundException",
                                               "Invalid keyId aws/s3"), errors.AccessDenied),
    ("get-400-KMS.AccessDeniedException",
     Recorded("get", 400, "KMS.AccessDeniedException",
              "The ciphertext refers to a customer master key that does not exist, does not "
              "exist in this region, or you are not allowed to access."), errors.AccessDenied),
    ("get-400-KMS.other", Recorded("get", 400, "KMS.IncorrectKeyException", "wrong key"),
     errors.AccessDenied),
    # -- weather
    ("get-503-SlowDown", Recorded("get", 503, "SlowDown", "Please reduce your request rate."),
     errors.StorageUnavailable),
    ("put-503-ServiceUnavailable", Recorded("put", 503, "ServiceUnavailable",
                                            "Service is unable to handle request."),
     errors.StorageUnavailable),
    ("get-500-InternalError", Recorded("get", 500, "InternalError",
                                       "We encountered an internal error. Please try again."),
     errors.StorageUnavailable),
    ("get-429", Recorded("get", 429, "TooManyRequests", "Too many requests"),
     errors.StorageUnavailable),
    ("put-400-RequestTimeout",
     Recorded("put", 400, "RequestTimeout",
              "Your socket connection to the server was not read from or written to within "
              "the timeout period. Idle connections will be closed."), errors.OperationTimeout),
    ("get-408-RequestTimeout", Recorded("get", 408, "RequestTimeout", "Request Timeout"),
     errors.OperationTimeout),
    ("head-408", head(408), errors.OperationTimeout),
    ("get-400-ExpiredToken", Recorded("get", 400, "ExpiredToken",
                                      "The provided token has expired.",
                                      {"Token-0": "FwoGZXIvYXdzE"}), errors.StorageUnavailable),
    ("get-400-TokenRefreshRequired", Recorded("get", 400, "TokenRefreshRequired",
                                              "The provided token must be refreshed."),
     errors.StorageUnavailable),
    ("get-403-RequestTimeTooSkewed",
     Recorded("get", 403, "RequestTimeTooSkewed",
              "The difference between the request time and the current time is too large.",
              {"RequestTime": "20260101T000000Z", "ServerTime": "2026-01-01T00:20:00Z",
               "MaxAllowedSkewMilliseconds": "900000"}), errors.StorageUnavailable),
    ("put-409-OperationAborted",
     Recorded("put", 409, "OperationAborted",
              "A conflicting conditional operation is currently in progress against this "
              "resource. Try again."), errors.StorageUnavailable),
    ("put-409-ConditionalRequestConflict",
     Recorded("put", 409, "ConditionalRequestConflict",
              "A conflicting operation occurred. If using PutObject you can retry the request."),
     errors.StorageUnavailable),
    ("put-400-BadDigest", Recorded("put", 400, "BadDigest",
                                   "The Content-MD5 you specified did not match what we "
                                   "received."), errors.StorageUnavailable),
    ("put-400-IncompleteBody", Recorded("put", 400, "IncompleteBody",
                                        "You did not provide the number of bytes specified by "
                                        "the Content-Length HTTP header"),
     errors.StorageUnavailable),
    ("get-307-TemporaryRedirect", Recorded("get", 307, "TemporaryRedirect",
                                           "Please re-send this request to the specified "
                                           "temporary endpoint."), errors.StorageUnavailable),
    ("get-400-KMS.ThrottlingException", Recorded("get", 400, "KMS.ThrottlingException",
                                                 "Rate exceeded"), errors.StorageUnavailable),
    ("get-500-KMS.KeyUnavailableException",
     Recorded("get", 500, "KMS.KeyUnavailableException", f"{KMS_KEY} is unavailable."),
     errors.StorageUnavailable),
    ("get-500-KMS.KMSInternalException", Recorded("get", 500, "KMS.KMSInternalException",
                                                  "internal"), errors.StorageUnavailable),
    ("get-500-KMS.DependencyTimeoutException",
     Recorded("get", 500, "KMS.DependencyTimeoutException", "timed out"),
     errors.StorageUnavailable),
    ("head-503", head(503), errors.StorageUnavailable),
    ("list-502-unknown", Recorded("list", 502, "BadGateway", "Bad Gateway"),
     errors.StorageUnavailable),
    ("get-504-unknown", Recorded("get", 504, "GatewayTimeout", ""), errors.StorageUnavailable),
    ("get-500-KMS.unknown", Recorded("get", 500, "KMS.SomethingNew", "x"),
     errors.StorageUnavailable),
    # -- refused: the request itself cannot succeed
    ("get-400-InvalidArgument-version",
     Recorded("get", 400, "InvalidArgument", "Invalid version id specified",
              {"ArgumentName": "versionId", "ArgumentValue": "not-a-version"}),
     errors.StorageRefused),
    ("get-400-InvalidRequest", Recorded("get", 400, "InvalidRequest",
                                        "The encryption parameters are not applicable to this "
                                        "object."), errors.StorageRefused),
    ("get-416-InvalidRange", Recorded("get", 416, "InvalidRange",
                                      "The requested range is not satisfiable",
                                      {"RangeRequested": "bytes=10-20",
                                       "ActualObjectSize": "3"}), errors.StorageRefused),
    ("put-405-MethodNotAllowed", Recorded("put", 405, "MethodNotAllowed",
                                          "The specified method is not allowed against this "
                                          "resource.", {"Method": "PUT", "ResourceType": "Object"}),
     errors.StorageRefused),
    ("get-405-no-delete-marker", Recorded("get", 405, "MethodNotAllowed",
                                          "The specified method is not allowed against this "
                                          "resource."), errors.StorageRefused),
    ("put-412-PreconditionFailed", Recorded("put", 412, "PreconditionFailed",
                                            "At least one of the pre-conditions you specified "
                                            "did not hold"), errors.StorageRefused),
    ("get-501-NotImplemented", Recorded("get", 501, "NotImplemented",
                                        "A header you provided implies functionality that is "
                                        "not implemented", {"Header": "If-Match"}),
     errors.StorageRefused),
    ("get-301-PermanentRedirect",
     Recorded("get", 301, "PermanentRedirect",
              "The bucket you are attempting to access must be addressed using the specified "
              "endpoint. Please send all future requests to this endpoint.",
              {"Endpoint": "photos.s3.eu-west-1.amazonaws.com", "Bucket": "photos"}),
     errors.StorageRefused),
    ("get-400-unknown", Recorded("get", 400, "AuthorizationHeaderMalformed",
                                 "The authorization header is malformed; the region 'us-east-1' "
                                 "is wrong; expecting 'eu-west-1'"), errors.StorageRefused),
    ("put-400-unknown", Recorded("put", 400, "MetadataTooLarge",
                                 "Your metadata headers exceed the maximum allowed metadata "
                                 "size."), errors.StorageRefused),
    ("put-404-NoSuchKey", Recorded("put", 404, "NoSuchKey", "odd"), errors.StorageRefused),
    ("head-400", head(400), errors.StorageRefused),
    ("get-418-unknown", Recorded("get", 418, "ImATeapot", "short and stout"),
     errors.StorageRefused),
]


@pytest.mark.parametrize(("answer", "expected"), [(a, e) for _, a, e in CASES],
                         ids=[name for name, _, _ in CASES])
def test_recorded_answer_becomes_its_error(answer: Recorded,
                                           expected: type[errors.ClipError]) -> None:
    exc = answer.client_error()
    error = storage_error(exc, answer.operation, WHERE)
    assert type(error) is expected
    assert error.transient is issubclass(expected, errors.TransientError)
    assert error.message.startswith(f"{WHERE}: ")
    assert str(answer.status) in error.message  # the operator sees what S3 said
    assert (answer.code or str(answer.status)) in error.message


def test_every_row_of_the_table_has_a_recorded_answer() -> None:
    hit = {row_of(answer.client_error(), answer.operation) for _, answer, _ in CASES}
    assert [row for row in ANSWERS if row not in hit] == []


def test_a_delete_marker_is_never_weather() -> None:
    """The regression: a job pinned to a delete marker's version retried 5 times and ended
    storage_unavailable, a reason operators are told to redrive."""
    marker = Recorded("get", 405, "MethodNotAllowed",
                      "The specified method is not allowed against this resource.",
                      {"Method": "GET", "ResourceType": "DeleteMarker"}, MARKER)
    error = storage_error(marker.client_error(), "get", WHERE)
    assert error.reason == "object_deleted" and not error.transient
    assert "delete marker" in error.message


def test_an_unknown_4xx_is_refused_and_names_status_and_code() -> None:
    answer = Recorded("get", 422, "UnprocessableEntity", "no")
    error = storage_error(answer.client_error(), "get", WHERE)
    assert error.reason == "storage_refused" and not error.transient
    assert "storage refused the request (422 UnprocessableEntity: no)" in error.message


def test_an_unknown_5xx_is_weather() -> None:
    error = storage_error(Recorded("put", 599, "Odd", "").client_error(), "put", WHERE)
    assert error.reason == "storage_unavailable" and error.transient


def test_an_answer_without_a_status_is_weather() -> None:
    exc = ClientError({"Error": {"Code": "Odd", "Message": ""}}, "GetObject")
    assert storage_error(exc, "get", WHERE).reason == "storage_unavailable"


def test_a_malformed_version_names_the_argument() -> None:
    answer = Recorded("get", 400, "InvalidArgument", "Invalid version id specified",
                      {"ArgumentName": "versionId", "ArgumentValue": "not-a-version"})
    error = storage_error(answer.client_error(), "get", WHERE)
    assert "ArgumentName=versionId" in error.message
    assert "ArgumentValue=not-a-version" in error.message


def test_an_archived_object_names_its_storage_class() -> None:
    answer = Recorded("get", 403, "InvalidObjectState", "not valid for the storage class",
                      {"StorageClass": "DEEP_ARCHIVE"})
    error = storage_error(answer.client_error(), "get", WHERE)
    assert error.reason == "object_archived" and "StorageClass=DEEP_ARCHIVE" in error.message


def test_the_new_reasons_are_permanent_leaves() -> None:
    assert {"object_deleted", "object_changed", "object_archived", "output_bucket_missing",
            "storage_refused"} <= errors.PERMANENT_REASONS


def test_two_rows_for_one_answer_are_refused() -> None:
    row = ANSWERS[0]
    with pytest.raises(ValueError, match="two rows"):
        s3_store._index([row, row])


class _Refusing:
    """A client whose every call answers with one recorded error."""

    def __init__(self, answer: Recorded) -> None:
        self.answer = answer

    def get_object(self, **_: Any) -> Any:
        raise self.answer.client_error()

    head_object = put_object = get_object


def test_the_store_raises_the_error_from_botocores() -> None:
    answer = Recorded("get", 405, "MethodNotAllowed", "not allowed",
                      {"ResourceType": "DeleteMarker"}, MARKER)
    with pytest.raises(errors.ObjectDeleted) as info:
        S3Store(_Refusing(answer)).get("photos", "shoe.jpg", version="UIORUnfndfiufdisojhr")
    assert isinstance(info.value.__cause__, ClientError)
    assert info.value.message.startswith("s3://photos/shoe.jpg: ")


def test_the_store_classifies_a_put_as_a_put() -> None:
    answer = Recorded("put", 404, "NoSuchBucket", "The specified bucket does not exist")
    with pytest.raises(errors.OutputBucketMissing):
        S3Store(_Refusing(answer)).put("cutouts", "a.png", b"x", content_type="image/png")
    with pytest.raises(errors.ObjectMissing):
        S3Store(_Refusing(answer)).get("cutouts", "a.png")
