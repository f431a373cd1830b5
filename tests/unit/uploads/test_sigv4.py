"""SigV4 against the examples AWS publishes for S3 ("Examples: Signature Calculations in AWS
Signature Version 4", header-based), and against botocore's signer on requests like ours."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from townhall.uploads.adapters.sigv4 import EMPTY_SHA256, Signer, canonical_query

AWS = Signer("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1")
WHEN = datetime(2013, 5, 24, tzinfo=UTC)
HOST = "examplebucket.s3.amazonaws.com"


@pytest.mark.parametrize(
    ("path", "query", "headers", "signature"),
    [
        (  # GET Object, the first ten bytes
            "/test.txt",
            "",
            {"Range": "bytes=0-9"},
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ),
        (  # GET Bucket Lifecycle
            "/",
            "lifecycle",
            {},
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        ),
        (  # GET Bucket (List Objects)
            "/",
            "max-keys=2&prefix=J",
            {},
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ],
    ids=["get-object-range", "get-lifecycle", "list-objects"],
)
def test_the_examples_aws_publishes(
    path: str, query: str, headers: dict[str, str], signature: str
) -> None:
    signed = AWS.sign("GET", HOST, path, query, headers, EMPTY_SHA256, WHEN)
    assert signed["x-amz-date"] == "20130524T000000Z"
    assert signed["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
    )
    assert signed["Authorization"].endswith(f", Signature={signature}")


def test_a_query_is_canonical_whatever_its_order_and_encoding() -> None:
    assert canonical_query("uploads") == "uploads="
    assert canonical_query("uploadId=a+b/c%3D&partNumber=2") == (
        "partNumber=2&uploadId=a%2Bb%2Fc%3D"
    )
    assert canonical_query("prefix=a/b c~") == "prefix=a%2Fb%20c~"


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "body"),
    [
        ("PUT", "/bucket/p/quarantine/0192-ab", "", {"content-type": "x/y"}, b"hello"),
        ("POST", "/bucket/p/clean/0192-ab", "uploads=", {}, b""),
        ("PUT", "/bucket/k", "partNumber=3&uploadId=Zx%2B1%2F2%3D", {}, b"part" * 1000),
        ("PUT", "/bucket/clean/k", "", {"x-amz-copy-source": "/bucket/quarantine/k"}, b""),
        ("GET", "/bucket/k", "", {"range": "bytes=5-"}, b""),
    ],
)
def test_as_botocore_signs(
    method: str, path: str, query: str, headers: dict[str, str], body: bytes
) -> None:
    auth = pytest.importorskip("botocore.auth")
    awsrequest = pytest.importorskip("botocore.awsrequest")
    credentials = pytest.importorskip("botocore.credentials")
    digest = hashlib.sha256(body).hexdigest()
    ours = Signer("AKIDEXAMPLE", "secret/key+", "eu-central-1").sign(
        method, "127.0.0.1:9000", path, query, headers, digest, WHEN
    )
    url = f"http://127.0.0.1:9000{path}" + (f"?{query}" if query else "")
    request = awsrequest.AWSRequest(
        method=method,
        url=url,
        data=body,
        headers={**headers, "X-Amz-Content-SHA256": digest, "X-Amz-Date": "20130524T000000Z"},
    )
    request.context["timestamp"] = "20130524T000000Z"  # as moto checks a signature
    signer = auth.S3SigV4Auth(
        credentials.Credentials("AKIDEXAMPLE", "secret/key+"), "s3", "eu-central-1"
    )
    canonical = signer.canonical_request(request)
    theirs = signer.signature(signer.string_to_sign(request, canonical), request)
    assert ours["Authorization"].endswith(f", Signature={theirs}")
