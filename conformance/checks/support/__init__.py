"""The helper layer for checks: what checks of every family do to a mailbox, a second connection and a JMAP account.

A check imports the IMAP helpers from here (``from conformance.checks.support import Blame, ChangeMaker, select,
untagged``) and the JMAP ones from ``conformance.checks.support.jmap``; the modules, one concern each:

- ``blame``: ``Blame`` (HARNESS: error, PREREQUISITE: not-applicable, SERVER: fail), the choice every helper takes
  of who is at fault when its step goes wrong (set-up steps default to the harness's).
- ``imap``: ``select``/``examine`` (-> ``Selected``: EXISTS, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, flags, raw result),
  ``append`` (sync, non-sync LITERAL+ or literal8; -> ``Appended`` with APPENDUID), ``search_uids``, ``uids``,
  ``fetch_uid``, ``populate`` (fill a mailbox quickly).
- ``changes``: ``ChangeMaker``, the second, undisturbed connection that appends, flags and expunges while the
  connection under test watches.
- ``untagged``: ``wait_for_untagged`` and ``Watch`` (waiting for untagged responses with a deadline), and the
  predicates they take: ``untagged.exists(n)``, ``untagged.fetch(n)``, ``untagged.expunge_or_vanished()``.
- ``sync``: ``MailboxView``, ``full_sync`` and ``ground_truth`` (a fresh read-only full sync on a direct connection).
- ``jmap``: JMAP clients bound to the case (``client``, the ``writer``), EventSource and WebSocket streams through the
  path, ``state_change``, ``enable_push``, the EventSource ``timeline``.

Scratch mailboxes come from the case (``case.scratch_mailbox(conn)``, ``ChangeMaker.scratch_mailbox()``; other
names a check creates: ``case.delete_at_end(...)``). Sans-IO parsing (``parse_exists``, ``parse_fetch``,
``response_code``, ...) lives in ``conformance.protocols.imapwire``; family-specific helpers stay beside their
checks (push timelines, quick resync, S/MIME comparison rows).
"""

from . import untagged
from .blame import Blame, refuse
from .changes import ChangeMaker, message
from .imap import Appended, Selected, append, examine, fetch_items, fetch_uid, find_code, populate, search_uids, select, uids
from .sync import MailboxView, full_sync, ground_truth, norm_flags, view_from_select
from .untagged import Watch, wait_for_untagged

__all__ = ["Appended", "Blame", "ChangeMaker", "MailboxView", "Selected", "Watch", "append", "examine", "fetch_items",
           "fetch_uid", "find_code", "full_sync", "ground_truth", "message", "norm_flags", "populate", "refuse",
           "search_uids", "select", "uids", "untagged", "view_from_select", "wait_for_untagged"]
