#!/usr/bin/env python3
"""Reads SQS messages the way the Amazon SQS Extended Client Library does, for the tests.

Standard input: the JSON array `node sqs_client.mjs receive` prints (body and attributes of
each message). A message with the attribute ExtendedPayloadSize (or the older
SQSLargePayloadSize) must have as its body the library's pointer,
["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":...,"s3Key":...}];
its object is fetched with this reader's own credentials, in a request botocore signs, and its
size must be the attribute's. Prints a JSON array of {"body", "pointer", "key"} in the same
order; exits 1 with the reason on a malformed pointer or a size that differs.

Usage: extended_client_reader.py --s3-endpoint URL [--access-key K --secret-key S]
"""
import argparse
import json
import sys

import botocore.session
from botocore.config import Config

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
SIZE_ATTRIBUTES = ("ExtendedPayloadSize", "SQSLargePayloadSize")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--s3-endpoint", required=True)
    p.add_argument("--access-key", default="S3RVER")
    p.add_argument("--secret-key", default="S3RVER")
    args = p.parse_args()
    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=args.s3_endpoint, region_name="us-east-1",
        aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    out = []
    for message in json.load(sys.stdin):
        attributes = message.get("attributes") or {}
        size_attribute = next((a for a in SIZE_ATTRIBUTES if a in attributes), None)
        if size_attribute is None:
            out.append({"body": message["body"], "pointer": False, "key": None})
            continue
        if attributes[size_attribute]["type"] != "Number":
            sys.exit(f"{size_attribute} is of type {attributes[size_attribute]['type']}, not Number")
        pointer = json.loads(message["body"])
        if (not isinstance(pointer, list) or len(pointer) != 2 or pointer[0] != POINTER_CLASS
                or set(pointer[1]) != {"s3BucketName", "s3Key"}):
            sys.exit(f"not an Extended Client pointer: {message['body'][:200]}")
        bucket, key = pointer[1]["s3BucketName"], pointer[1]["s3Key"]
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if len(data) != int(attributes[size_attribute]["value"]):
            sys.exit(f"{key}: {len(data)} bytes, but {size_attribute} says "
                     f"{attributes[size_attribute]['value']}")
        out.append({"body": data.decode("utf-8"), "pointer": True, "key": key})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
