"""Typed reading of what a server sent as structured data (JMAP JSON objects, IMAP FETCH items): a member that is
missing or of the wrong type is a ``fail`` naming the member and the RFC section that requires it, never a KeyError.

Sans-IO. ``Obj`` is a dict (so ``json.dumps``, ``==`` and ``.get`` behave as usual) whose ``[]`` and typed accessors
(``obj.str("state")``, ``obj.list("ids")``, ``obj.obj("created")``) raise ``MissingMember``/``MistypedMember``
(``ProtocolViolation``s: the server's fault) with where the object came from: ``Email/get response has no 'state'
member (RFC 8620 5.1: state: String)``. ``Arr`` does the same for arrays indexed past their end. ``schema`` gives the
types the RFC declares for the members of one kind of object; they are checked when a member is read, never before:
a check fails for what it relies on, and a member no check reads (say Cyrus 3.6 leaving ``newState`` out of its
Email/import answers) does not fail the checks of unrelated requirements that happen to import a message.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ProtocolViolation

NULL = type(None)
TYPE_NAMES = {str: "String", int: "Number", float: "Number", bool: "Boolean", list: "Array", dict: "Object",
              NULL: "null"}

# RFC 8620 (core) and RFC 8621 (mail): the members of each kind of object the suite reads, with their types
GET = {"accountId": str, "state": str, "list": list, "notFound": list}
CHANGES = {"accountId": str, "oldState": str, "newState": str, "hasMoreChanges": bool, "created": list,
           "updated": list, "destroyed": list}
SET = {"accountId": str, "oldState": (str, NULL), "newState": str, "created": (dict, NULL), "updated": (dict, NULL),
       "destroyed": (list, NULL), "notCreated": (dict, NULL), "notUpdated": (dict, NULL), "notDestroyed": (dict, NULL)}
QUERY = {"accountId": str, "queryState": str, "canCalculateChanges": bool, "position": int, "ids": list}
IMPORT = {"accountId": str, "oldState": (str, NULL), "newState": str, "created": (dict, NULL),
          "notCreated": (dict, NULL)}
SESSION = {"capabilities": dict, "accounts": dict, "primaryAccounts": dict, "username": str, "apiUrl": str,
           "downloadUrl": str, "uploadUrl": str, "eventSourceUrl": str, "state": str}
RESPONSE = {"methodResponses": list, "sessionState": str}
UPLOAD = {"accountId": str, "blobId": str, "type": str, "size": int}
STATE_CHANGE = {"@type": str, "changed": dict}

# method-response kind (by the method name's suffix) -> (RFC section, the members' types)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "/get": ("RFC 8620 5.1", GET),
    "/changes": ("RFC 8620 5.2", CHANGES),
    "/set": ("RFC 8620 5.3", SET),
    "/copy": ("RFC 8620 5.4", SET),
    "/query": ("RFC 8620 5.5", QUERY),
    "/queryChanges": ("RFC 8620 5.6", {"accountId": str, "oldQueryState": str, "newQueryState": str}),
    "Email/import": ("RFC 8621 4.8", IMPORT),
    "Email/parse": ("RFC 8621 4.9", {"accountId": str}),
}


def method_kind(name: str) -> tuple[str, dict[str, Any]] | None:
    """(RFC section, member types) of a method's response, None for others."""
    if name in METHODS:
        return METHODS[name]
    for suffix, spec in METHODS.items():
        if suffix.startswith("/") and name.endswith(suffix):
            return spec
    return None


class MissingMember(ProtocolViolation):
    """A member the RFC requires is absent from what the server sent."""


class MistypedMember(ProtocolViolation):
    """A member has a type other than the one the RFC declares."""


def _type_name(types: Any) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return "|".join(TYPE_NAMES.get(t, t.__name__) for t in types)


def _shown(value: Any) -> str:
    """A member's value as JSON, cut short."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is(value: Any, types: Any) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is no Number
    return isinstance(value, types)


def wrap(value: Any, where: str, section: str) -> Any:
    """``value`` with dicts and lists made ``Obj``/``Arr`` (recursively on access), anything else unchanged."""
    if isinstance(value, dict) and not isinstance(value, Obj):
        return Obj(value, where, section)
    if isinstance(value, list) and not isinstance(value, Arr):
        return Arr(value, where, section)
    return value


class Obj(dict):
    """A JSON object from the server that names itself in errors: ``where`` (e.g. 'Email/get response') and
    ``section`` (e.g. 'RFC 8620 5.1'); ``schema`` maps member names to their declared types."""

    def __init__(self, data: dict, where: str, section: str, schema: dict[str, Any] | None = None) -> None:
        super().__init__(data)
        self.where = where
        self.section = section
        self.schema = schema or {}

    def _missing(self, name: str) -> MissingMember:
        declared = f": {name}: {_type_name(self.schema[name])}" if name in self.schema else ""
        return MissingMember(f"{self.where} has no '{name}' member ({self.section}{declared}); members: "
                             f"{', '.join(sorted(map(str, self))) or 'none'}")

    def __getitem__(self, name: str) -> Any:
        if name not in self:
            raise self._missing(name)
        value = dict.__getitem__(self, name)
        if name in self.schema and not _is(value, self.schema[name]):
            raise MistypedMember(f"{self.where} member '{name}' is {_shown(value)} ({_type_name(type(value))}); "
                                 f"{self.section} declares {_type_name(self.schema[name])}")
        return wrap(value, f"{self.where} '{name}'", self.section)

    def typed(self, name: str, types: Any) -> Any:
        """Member ``name``, which must be present and of ``types`` (a type or a tuple of types)."""
        value = self[name]
        if not _is(value, types):
            raise MistypedMember(f"{self.where} member '{name}' is {_shown(value)} ({_type_name(type(value))}); "
                                 f"{self.section} requires {_type_name(types)}")
        return value

    def str(self, name: str) -> str:
        return self.typed(name, str)

    def int(self, name: str) -> int:
        return self.typed(name, int)

    def bool(self, name: str) -> bool:
        return self.typed(name, bool)

    def list(self, name: str) -> Arr:
        return self.typed(name, list)

    def obj(self, name: str) -> Obj:
        return self.typed(name, dict)

    def optional(self, name: str, types: Any, default: Any = None) -> Any:
        """Member ``name`` when present (then of ``types``; null counts as absent), else ``default``."""
        if dict.get(self, name) is None:
            return default
        return self.typed(name, types)

    def require(self, *names: str) -> Obj:
        """Every member of ``names`` present with its declared type; returns self."""
        for name in names:
            _ = self[name]
        return self


class Arr(list):
    """A JSON array from the server; indexing past its end names it like ``Obj`` names a missing member."""

    def __init__(self, data: list, where: str, section: str) -> None:
        super().__init__(data)
        self.where = where
        self.section = section

    def __getitem__(self, index):  # noqa: ANN001 - int or slice, as list
        if isinstance(index, slice):
            return Arr(list.__getitem__(self, index), self.where, self.section)
        try:
            value = list.__getitem__(self, index)
        except IndexError:
            raise MissingMember(f"{self.where} has no element {index} (it has {len(self)}; {self.section})") from None
        return wrap(value, f"{self.where}[{index}]", self.section)

    def __iter__(self):
        for i, value in enumerate(list.__iter__(self)):
            yield wrap(value, f"{self.where}[{i}]", self.section)


def read_object(value: Any, where: str, section: str, schema: dict[str, Any] | None = None) -> Obj:
    """``value`` as an ``Obj``; a value that is no JSON object is a ProtocolViolation naming ``where``."""
    if not isinstance(value, dict):
        raise ProtocolViolation(f"{where} is not a JSON object ({section}): {str(value)[:200]!r}")
    return Obj(value, where, section, schema)


def method_response(name: str, args: Any, call_id: str = "") -> Obj:
    """The arguments of a method response as ``Obj``, with the section and member types of its kind."""
    kind = method_kind(name)
    where = f"{name} response" + (f" (call {call_id})" if call_id else "")
    if kind is None:
        return read_object(args, where, "RFC 8620 3.4")
    section, schema = kind
    return read_object(args, where, section, schema)
