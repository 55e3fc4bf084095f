"""Drives a running IAM with botocore (the AWS SDK for Python), as a platform engineer's AWS
tooling would with --endpoint-url, and prints what happened as JSON, one entry per step:
{"step": ..., "ok": true, ...} or {"step": ..., "error": "<AWS error code>", "message": ...}.
botocore signs the requests and parses the XML answers with AWS's own service models, so a
wrongly shaped response fails here. tests/aws_clients.rs asserts on the output.

usage: python3 aws_flow.py ENDPOINT_URL ADMIN_KEY_ID ADMIN_SECRET
"""
import json
import sys
import time

import botocore.session
from botocore.exceptions import ClientError

endpoint, admin_id, admin_secret = sys.argv[1:4]
session = botocore.session.get_session()
steps = []


def client(service, key_id, secret):
    return session.create_client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def step(name, call, **kwargs):
    try:
        result = call(**kwargs)
        result.pop("ResponseMetadata", None)
        entry = {"step": name, "ok": True, "result": result}
    except ClientError as e:
        entry = {
            "step": name,
            "error": e.response["Error"]["Code"],
            "message": e.response["Error"].get("Message", ""),
            "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
        }
    steps.append(entry)
    return entry


def eventually(name, call, want_ok, **kwargs):
    """Each instance learns a policy change from ChainFire's watch: allow it a few seconds."""
    deadline = time.time() + 10
    while True:
        entry = step(name, call, **kwargs)
        if entry.get("ok", False) == want_ok or time.time() > deadline:
            return entry
        steps.pop()
        time.sleep(0.2)


admin_sts = client("sts", admin_id, admin_secret)
admin = client("iam", admin_id, admin_secret)
step("admin identity", admin_sts.get_caller_identity)
step("create alice", admin.create_user, UserName="alice")
step("create alice again", admin.create_user, UserName="alice")
key = step("alice's key", admin.create_access_key, UserName="alice")
alice_id = key["result"]["AccessKey"]["AccessKeyId"]
alice_secret = key["result"]["AccessKey"]["SecretAccessKey"]
alice_sts = client("sts", alice_id, alice_secret)
alice = client("iam", alice_id, alice_secret)
eventually("alice identity", alice_sts.get_caller_identity, True)
step("alice creates mallory without a policy", alice.create_user, UserName="mallory")
allow_m = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iam:CreateUser", "Resource": "arn:aws:iam::*:user/m*"}]})
step("allow alice users m*", admin.put_user_policy, UserName="alice", PolicyName="make-m", PolicyDocument=allow_m)
eventually("alice creates mallory", alice.create_user, True, UserName="mallory")
step("alice creates bob (not m*)", alice.create_user, UserName="bob")
deny = json.dumps({"Statement": [
    {"Sid": "nomore", "Effect": "Deny", "Action": "iam:Create*", "Resource": "*"}]})
step("deny alice", admin.put_user_policy, UserName="alice", PolicyName="deny", PolicyDocument=deny)
eventually("alice creates mike despite the deny", alice.create_user, False, UserName="mike")
step("malformed policy", admin.put_user_policy, UserName="alice", PolicyName="bad", PolicyDocument="{")
step("list alice's keys", admin.list_access_keys, UserName="alice")
step("wrong secret", client("sts", alice_id, "x" * 40).get_caller_identity)
step("unknown key", client("sts", "AKIAUNKNOWNUNKNOWN00", "x" * 40).get_caller_identity)
step("delete alice with a key", admin.delete_user, UserName="alice")
step("delete alice's key", admin.delete_access_key, UserName="alice", AccessKeyId=alice_id)
step("delete make-m", admin.delete_user_policy, UserName="alice", PolicyName="make-m")
step("delete deny", admin.delete_user_policy, UserName="alice", PolicyName="deny")
step("delete alice", admin.delete_user, UserName="alice")
step("delete alice again", admin.delete_user, UserName="alice")
eventually("alice's deleted key", alice_sts.get_caller_identity, False)
json.dump(steps, sys.stdout, default=str)
