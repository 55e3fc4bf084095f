"""Signs every request of corpus.json with botocore (the AWS SDK for Python's own SigV4 code),
at the corpus's fixed time, and prints the signed requests as JSON: the URL (a presigned one
carries its signature in the query) and the headers botocore added. The Rust test
(tests/independent_signers.rs) verifies each with iam-sigv4; nothing here uses this project's code.

usage: python3 botocore_sign.py corpus.json
"""
import datetime
import json
import sys

import botocore
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main():
    corpus = json.load(open(sys.argv[1]))
    fixed = datetime.datetime.strptime(corpus["timestamp"], "%Y%m%dT%H%M%SZ")
    # botocore reads the clock through get_current_datetime (newer releases) or
    # datetime.datetime.utcnow (older ones, e.g. Debian 12's 1.29): pin whichever it has.
    if hasattr(botocore.auth, "get_current_datetime"):
        botocore.auth.get_current_datetime = lambda: fixed
    else:
        class PinnedDatetime(datetime.datetime):
            @classmethod
            def utcnow(cls):
                return fixed

        botocore.auth.datetime.datetime = PinnedDatetime

    out = []
    for case in corpus["cases"]:
        url = "https://%s%s" % (corpus["host"], case["path"])
        if case["query"]:
            url += "?" + case["query"]
        request = AWSRequest(method=case["method"], url=url, data=case["body"].encode())
        for name, value in case["headers"]:
            # HTTPHeaders appends: a repeated name stays repeated.
            request.headers[name] = value
        credentials = Credentials(
            corpus["access_key_id"], corpus["secret_access_key"], case.get("token")
        )
        if "presign_expires" in case:
            signer = botocore.auth.SigV4QueryAuth(
                credentials, case["service"], corpus["region"], expires=case["presign_expires"]
            )
        else:
            signer = botocore.auth.SigV4Auth(credentials, case["service"], corpus["region"])
        signer.add_auth(request)
        out.append(
            {
                "name": case["name"],
                "url": request.url,
                "headers": [[k, v] for k, v in request.headers.items()],
            }
        )
    json.dump({"signer": "botocore " + botocore.__version__, "signed": out}, sys.stdout)


if __name__ == "__main__":
    main()
