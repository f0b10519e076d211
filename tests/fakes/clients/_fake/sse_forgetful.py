"""A JMAP push client of the suite's tests that breaks one rule on purpose (sse.reconnect-resume): it follows the
EventSource stream and reconnects when the stream ends, but never sends Last-Event-ID, so a change made while it
was away is not resumed from the stream. Everything else it does plainly: the session, Email/query in the mailbox,
Email/get for blobIds, a download per new message, one sync per state event naming Email.
Standard library only; run by the system python3 as the client user.
"""

import base64
import json
import os
import ssl
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "clients", "_lib"))
from lemonade_adapter import deliver, env, log, not_supported  # noqa: E402

e = env()
if e.case != "push" or e.scheme != "https" or e.proxy:
    not_supported(f"push over https without a proxy only, not {e.case} {e.url}")
CTX = ssl.create_default_context(cafile=e.ca_file or None)
AUTH = "Basic " + base64.b64encode(f"{e.user}:{e.password}".encode()).decode()
OPENER = urllib.request.build_opener(urllib.request.HTTPSHandler(context=CTX))


def http(url: str, body: dict | None = None, timeout: float = 30, **headers: str):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Authorization": AUTH, **headers})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    return OPENER.open(req, timeout=timeout)


SESSION = e.url if urllib.parse.urlsplit(e.url).path not in ("", "/") else e.url.rstrip("/") + "/.well-known/jmap"
with http(SESSION) as r:
    session, base = json.load(r), r.geturl()
ACCOUNT = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
API, DOWNLOAD, EVENTS = (urllib.parse.urljoin(base, session[k]).replace("%7B", "{").replace("%7D", "}")
                         for k in ("apiUrl", "downloadUrl", "eventSourceUrl"))
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


def call(name: str, args: dict) -> dict:
    with http(API, {"using": USING, "methodCalls": [[name, {"accountId": ACCOUNT, **args}, "c"]]}) as r:
        return json.load(r)["methodResponses"][0][1]


box = next((m["id"] for m in call("Mailbox/get", {"ids": None, "properties": ["name"]})["list"]
            if m["name"] == e.mailbox), None) or call("Mailbox/query", {"filter": {"role": "inbox"}})["ids"][0]
delivered: set[str] = set()


def sync() -> None:
    ids = [i for i in call("Email/query", {"filter": {"inMailbox": box}})["ids"] if i not in delivered]
    if not ids:
        return
    for em in call("Email/get", {"ids": ids, "properties": ["id", "blobId"]})["list"]:
        url = DOWNLOAD.replace("{accountId}", ACCOUNT).replace("{blobId}", em["blobId"]).replace(
            "{name}", "message.eml").replace("{type}", "message/rfc822")
        with http(url) as r:
            deliver(e.output, r.read())
        delivered.add(em["id"])
    log(f"delivered {len(ids)}")


sync()
url = EVENTS.replace("{types}", "*").replace("{closeafter}", "no").replace("{ping}", "0")
while True:  # the client under test is stopped by the suite; each pass is one stream
    try:
        with http(url, timeout=3600, Accept="text/event-stream") as stream:  # never a Last-Event-ID header
            log("stream open")
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith("data:") and '"Email"' in line:
                    sync()
        log("stream ended: reconnecting without Last-Event-ID")
    except OSError as ex:
        log(f"stream failed: {ex}")
    time.sleep(1)

