"""PushSubscription for the scripted JMAP peer (tests/fakes/jmap.py): the application-server side of RFC 8620 7.2.

Conformant unless a fault of ``tests.fakes.jmap.FAULTS`` says otherwise: PushSubscription/get and /set without
accountId; on create a PushVerification POSTed at once (aes128gcm with the subscription's keys, RFC 8291); a
StateChange POST per change once verified, with Content-Type application/json and TTL; after a 429 nothing until its
Retry-After has passed; nothing after ``expires``; expires capped at 30 days; http:// URLs refused; of the internal
addresses only 127.0.0.1 (the suite's receiver) allowed; at most 64 subscriptions per user. Used only to prove that
the PushSubscription checks can fail and pass.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from conformance.protocols.webpush import encrypt

CAP = dt.timedelta(days=30)
SHORT_CAP = dt.timedelta(hours=24)


def _utc(when: dt.datetime) -> str:
    return when.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


@dataclass
class Sub:
    id: str
    owner: str
    device: str
    url: str
    keys: dict | None
    types: list[str] | None
    expires: dt.datetime | None
    code: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    verified: bool = False
    blocked_until: float = 0.0  # monotonic; set by a 429 with Retry-After
    pending: dict | None = None  # the latest StateChange held back while blocked: pushed when the block ends


class PushSubscriptions:
    """The subscriptions of one fake server, and the POSTs they cause."""

    def __init__(self, faults: frozenset[str], limit: int) -> None:
        self.faults = faults
        self.limit = limit
        self.subs: dict[str, Sub] = {}
        self.lock = threading.Lock()
        self.http = httpx.Client(verify=False, timeout=5)
        self.counter = 0

    # -- methods ------------------------------------------------------------------------------------
    def method(self, name: str, args: dict, cid: str, user: str) -> list:
        if "no-pushsub" in self.faults:
            return ["error", {"type": "unknownMethod"}, cid]
        if name == "PushSubscription/get":
            return self._get(args, cid, user)
        if name == "PushSubscription/set":
            return self._set(args, cid, user)
        return ["error", {"type": "unknownMethod"}, cid]

    def _get(self, args: dict, cid: str, user: str) -> list:
        props = args.get("properties")
        shows = "get-shows-url" in self.faults
        if props and ({"url", "keys"} & set(props)) and not shows:
            return ["error", {"type": "forbidden"}, cid]
        mine = {i: s for i, s in self.subs.items() if s.owner == user}
        ids = args.get("ids")
        ids = list(mine) if ids is None else ids
        out = []
        for i in ids:
            s = mine.get(i)
            if s is None:
                continue
            obj = {"id": s.id, "deviceClientId": s.device, "types": s.types, "verificationCode": None,
                   "expires": _utc(s.expires) if s.expires else None}
            if shows:
                obj.update(url=s.url, keys=s.keys)
            out.append({k: v for k, v in obj.items() if not props or k in props or k == "id"})
        return ["PushSubscription/get", {"list": out, "notFound": [i for i in ids if i not in mine]}, cid]

    def _url_error(self, url: str) -> dict | None:
        u = urlsplit(url)
        if u.scheme != "https" and not (u.scheme == "http" and "accept-http" in self.faults):
            return {"type": "invalidProperties", "properties": ["url"], "description": "the url must be https"}
        host = u.hostname or ""
        try:
            internal = host == "localhost" or not ipaddress.ip_address(host).is_global
        except ValueError:
            internal = False
        allowed = "allow-internal" in self.faults or (host == "127.0.0.1" and "refuse-loopback" not in self.faults)
        if internal and not allowed:
            return {"type": "forbidden", "description": f"{host} is not an external address"}
        return None

    def _expires(self, asked: str | None) -> dt.datetime:
        cap = dt.datetime.now(dt.timezone.utc) + (SHORT_CAP if "short-expiry-cap" in self.faults else CAP)
        when = _parse(asked)
        return cap if when is None or when > cap else when

    def _set(self, args: dict, cid: str, user: str) -> list:
        created, not_created, updated, not_updated, destroyed = {}, {}, {}, {}, []
        for key, obj in (args.get("create") or {}).items():
            err = self._url_error(str(obj.get("url", "")))
            keys = obj.get("keys")
            if err is None and keys is not None and not (isinstance(keys, dict) and keys.get("p256dh") and keys.get("auth")):
                err = {"type": "invalidProperties", "properties": ["keys"]}
            if err is None and "no-sub-limit" not in self.faults and \
                    sum(1 for s in self.subs.values() if s.owner == user) >= self.limit:
                err = {"type": "overQuota", "description": f"at most {self.limit} push subscriptions"}
            if err:
                not_created[key] = err
                continue
            self.counter += 1
            expires = self._expires(obj.get("expires"))
            sub = Sub(f"P{self.counter}", user, str(obj.get("deviceClientId")), obj["url"], keys, obj.get("types"),
                      expires)
            with self.lock:
                self.subs[sub.id] = sub
            out = {"id": sub.id, "keys": None, "verificationCode": None}
            if _utc(expires) != obj.get("expires"):
                out["expires"] = _utc(expires)
            created[key] = out
            if "no-verification" not in self.faults:
                self._post(sub, {"@type": "PushVerification", "pushSubscriptionId": sub.id,
                                 "verificationCode": sub.code})
        for sid, patch in (args.get("update") or {}).items():
            sub = self.subs.get(sid)
            if sub is None or sub.owner != user:
                not_updated[sid] = {"type": "notFound"}
                continue
            changed = None
            if "verificationCode" in patch:
                if patch["verificationCode"] != sub.code and "accept-any-code" not in self.faults:
                    not_updated[sid] = {"type": "invalidProperties", "properties": ["verificationCode"]}
                    continue
                sub.verified = True
            if "expires" in patch:
                sub.expires = self._expires(patch["expires"])
                if _utc(sub.expires) != patch["expires"]:
                    changed = {"expires": _utc(sub.expires)}
            updated[sid] = changed
        for sid in args.get("destroy") or []:
            sub = self.subs.get(sid)
            if sub is not None and sub.owner == user:
                with self.lock:
                    del self.subs[sid]
                destroyed.append(sid)
        return ["PushSubscription/set", {"created": created or None, "notCreated": not_created or None,
                                         "updated": updated or None, "notUpdated": not_updated or None,
                                         "destroyed": destroyed or None}, cid]

    # -- pushes -------------------------------------------------------------------------------------
    def changed(self, account: str, owner: str, states: dict[str, str]) -> None:
        """A change in ``owner``'s account: a StateChange POST to each of the owner's subscriptions that wants it."""
        with self.lock:
            subs = [s for s in self.subs.values() if s.owner == owner]
        for s in subs:
            if not s.verified and "push-before-verify" not in self.faults:
                continue
            if s.expires and dt.datetime.now(dt.timezone.utc) > s.expires and "push-after-expiry" not in self.faults:
                continue
            wanted = {k: v for k, v in states.items() if s.types is None or k in s.types}
            if not wanted:
                continue
            body = {"@type": "StateChange", "changed": {account: wanted}}
            if time.monotonic() < s.blocked_until and "ignore-429" not in self.faults:
                s.pending = body  # coalesced: only the latest state goes out when the block ends
                continue
            self._post(s, body)

    def _post(self, s: Sub, obj: dict) -> None:
        threading.Thread(target=self._send, args=(s, obj), daemon=True).start()

    def _send(self, s: Sub, obj: dict) -> None:
        data = json.dumps(obj).encode()
        headers = {"Content-Type": "application/json"}
        if "no-ttl" not in self.faults:
            headers["TTL"] = "3600"
        if s.keys and "plaintext-push" not in self.faults:
            data = encrypt(data, s.keys["p256dh"], s.keys["auth"])
            headers["Content-Encoding"] = "aes128gcm"
        try:
            resp = self.http.post(s.url, content=data, headers=headers)
        except httpx.HTTPError:
            return
        if resp.status_code == 429:
            wait = float(resp.headers.get("retry-after", "5") or 5)
            s.blocked_until = time.monotonic() + wait
            timer = threading.Timer(wait, self._unblock, args=(s,))
            timer.daemon = True
            timer.start()

    def _unblock(self, s: Sub) -> None:
        body, s.pending = s.pending, None
        if body is not None and s.id in self.subs:
            self._post(s, body)

    def close(self) -> None:
        self.http.close()
