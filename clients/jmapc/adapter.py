"""jmapc adapter: fetch-once (every Email in the mailbox), sync (Email/changes since the saved state),
push (sync, then one more sync per EventSource `state` event that names Email; jmapc's own stream)."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "_lib"))
from lemonade_adapter import deliver, env, log, not_supported  # noqa: E402

e = env()
if e.case not in ("fetch-once", "sync", "push"):
    not_supported(f"case {e.case!r}")
if e.scheme != "https":
    not_supported(f"jmapc speaks JMAP over https only, not {e.scheme}")
if e.url.split("://", 1)[1].partition("/")[2] not in ("", ".well-known/jmap"):
    not_supported(f"jmapc always asks https://HOST/.well-known/jmap; the server URL is {e.url}")
os.environ["REQUESTS_CA_BUNDLE"] = e.ca_file
if e.proxy:
    os.environ["HTTPS_PROXY"] = e.proxy
else:
    os.environ.pop("HTTPS_PROXY", None)

import jmapc  # noqa: E402
from jmapc.methods import EmailChanges, EmailGet, EmailQuery, MailboxQuery  # noqa: E402
from jmapc.models import EmailQueryFilterCondition, MailboxQueryFilterCondition  # noqa: E402

client = jmapc.Client.create_with_password(f"{e.host}:{e.port}", e.user, e.password)
if os.environ.get("LEMONADE_JMAPC_RELATIVE_URLS", "resolve") == "resolve":
    # jmapc 0.4 uses the session's URLs as they come; Cyrus 3.6 sends relative ones ("/jmap/"), with which
    # jmapc cannot make a single request (requests: MissingSchema). Resolve them against the session URL, as
    # a user of the library would have to; LEMONADE_JMAPC_RELATIVE_URLS=keep shows the library's own behaviour.
    import urllib.parse

    base = f"https://{e.host}:{e.port}/.well-known/jmap"
    s = client.jmap_session
    for name in ("api_url", "download_url", "upload_url", "event_source_url"):
        value = getattr(s, name)
        if value.startswith("/"):
            log(f"session {name} is relative ({value}): resolved against {base}")
            setattr(s, name, urllib.parse.urljoin(base, value).replace("%7B", "{").replace("%7D", "}"))
STATE = e.path("jmapc-state.json")


def load_state() -> dict:
    try:
        with open(STATE) as f:
            return json.load(f)
    except OSError:
        return {"state": None, "delivered": []}


def save_state(st: dict) -> None:
    with open(STATE + ".tmp", "w") as f:
        json.dump(st, f)
    os.replace(STATE + ".tmp", STATE)


def mailbox_id() -> str:
    r = client.request(MailboxQuery(filter=MailboxQueryFilterCondition(name=e.mailbox)))
    if not r.ids:
        raise SystemExit(f"adapter: no mailbox named {e.mailbox!r}")
    return r.ids[0]


def download(ids: list[str]) -> int:
    if not ids:
        return 0
    got = client.request(EmailGet(ids=ids, properties=["id", "blobId", "mailboxIds"]))
    n = 0
    for em in got.data:
        if box not in (em.mailbox_ids or {}):
            continue
        url = client.jmap_session.download_url.format(accountId=client.account_id, blobId=em.blob_id,
                                                     name="message.eml", type="message/rfc822")
        r = client.requests_session.get(url, timeout=60)
        r.raise_for_status()
        deliver(e.output, r.content)
        n += 1
    return n


def sync(st: dict) -> None:
    """Deliver what is new since the saved state (everything on the first play)."""
    if st["state"]:
        since = st["state"]
        while True:
            ch = client.request(EmailChanges(since_state=since))
            new = [i for i in ch.created if i not in st["delivered"]]
            n = download(new)
            st["delivered"] += new
            since = ch.new_state
            log(f"Email/changes: {len(ch.created)} created, {n} delivered, state {since}")
            if not ch.has_more_changes:
                break
        st["state"] = since
    else:
        q = client.request(EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=box)))
        st["state"] = client.request(EmailGet(ids=[], properties=["id"])).state
        new = [i for i in q.ids if i not in st["delivered"]]
        n = download(new)
        st["delivered"] += new
        log(f"Email/query: {len(q.ids)} in {e.mailbox}, {n} delivered, state {st['state']}")
    save_state(st)


box = mailbox_id()
if e.case == "fetch-once":
    sync({"state": None, "delivered": []})
    sys.exit(0)
st = load_state()
sync(st)
if e.case == "sync":
    sys.exit(0)
log("listening on the EventSource stream")
for event in client.events:
    email = any(ts.email for ts in event.data.changed.values())
    log(f"state event {event.id}: Email {'changed' if email else 'unchanged'}")
    if email:
        sync(st)
