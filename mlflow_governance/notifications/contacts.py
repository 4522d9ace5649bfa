"""Users' notification contacts: a mail address or an Apprise URL of their own, per user.

Kept in the registry database beside the role grants (``mlgov_contact``), so the local CLI,
``mlgov events deliver`` and every governance-server worker read the same contacts. Setting one
is the admin's alone and audited (action ``set_contact``, on every path: `set_contact` runs in a
governance transaction like a role grant). A contact is *one* of:

* ``email``: a plain mail address, sent to through the one mail server of ``MLGOV_SMTP_URL``;
* ``url``: an Apprise URL (https://github.com/caronc/apprise/wiki) the user gets their messages
  at instead: ``slack://...`` or a Slack incoming-webhook ``https://hooks.slack.com/...`` URL,
  ``workflows://...`` for a Microsoft Teams (Power Automate) workflow, ``json(s)://host/path``
  for a plain JSON webhook.

Addresses and URLs are checked when set (a malformed mail address, or a URL Apprise cannot
parse, is refused naming the problem). A URL carries its channel's secret token, so it is shown
only masked (`mask`): in listings, audit rows and error messages.
"""

from __future__ import annotations

import re
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlflow_governance.core import roles, workflow
from mlflow_governance.core.schema import contacts as contacts_table

MAIL, URL = "mail", "url"
MAX_URL = 2000


def check_email(address: str) -> str | None:
    """Why ``address`` is not one plain mail address (name@domain), or None."""
    from apprise.utils.parse import is_email

    text = address.strip()
    found = is_email(text) if text and len(text) <= 320 else False
    if not found or found["full_email"] != text or found.get("name"):
        return f"{address!r} is not a mail address (expected name@domain, nothing else)"
    return None


def _plugin(url: str) -> Any:
    import apprise

    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def check_url(url: str) -> str | None:
    """Why Apprise cannot notify through ``url``, or None (the URL itself is never repeated)."""
    text = url.strip()
    if not text or len(text) > MAX_URL or any(c.isspace() for c in text):
        return f"the notification URL must be one Apprise URL without blanks, at most {MAX_URL} characters"
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if not scheme:
        return "the notification URL has no scheme: give an Apprise URL such as slack://..., workflows://... or " \
               "jsons://host/path"
    if _plugin(text) is None:
        return (f"Apprise cannot use this {scheme}:// URL (unknown scheme or missing parts): see "
                "https://github.com/caronc/apprise/wiki for Slack (slack://), Teams (workflows://) and JSON (jsons://)")
    return None


def mask(url: str | None) -> str | None:
    """``url`` with its secret parts hidden, as Apprise prints it in privacy mode, without the query."""
    if not url:
        return None
    plugin = _plugin(url.strip())
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else "?"
        return f"{scheme[:20]}://***"
    shown = plugin.url(privacy=True).split("?", 1)[0]
    scheme, _, rest = shown.partition("://")
    host, _, path = rest.partition("/")
    # Apprise hides passwords and the tokens it knows of; a webhook's path is often a token too.
    parts = [p if len(p) <= 4 or "..." in p else f"{p[0]}...{p[-1]}" for p in path.split("/")]
    return f"{scheme}://{host}" + ("/" + "/".join(parts) if path else "")


def scrub(message: str, url: str | None) -> str:
    """``message`` without the secret parts of ``url`` (an error text may quote the URL)."""
    if not url:
        return message
    out = message.replace(url, mask(url) or "***")
    for part in re.split(r"[/:@?&=#]+", url.split("://", 1)[-1]):
        if len(part) >= 8 and "." not in part:  # tokens and passwords; host names stay readable
            out = out.replace(part, "***")
    return out


def described(row: Any) -> str | None:
    """A contact as an admin may see it: the mail address, or the masked URL."""
    if row is None:
        return None
    return row.email if row.email else mask(row.url)


# --- storage ----------------------------------------------------------------------------------


def get(conn: Any, user: str) -> Any:
    """The contact row of ``user`` (``email``, ``url``, ``created_at``...), or None."""
    return conn.execute(sa.select(contacts_table).where(contacts_table.c.username == user)).first()


def every(conn: Any) -> dict[str, Any]:
    """Every contact row by user name."""
    return {r.username: r for r in conn.execute(sa.select(contacts_table))}


def _store(session: Session, user: str, email: str | None, url: str | None, actor: str) -> str:
    """Insert or replace the contact of ``user``; returns ``set``, ``changed`` or ``unchanged``."""
    now = int(time.time() * 1000)
    old = get(session, user)
    if old is None:
        session.execute(contacts_table.insert().values(username=user, email=email, url=url, set_by=actor,
                                                       created_at=now, updated_at=now))
        return "set"
    if (old.email, old.url) == (email, url):
        return "unchanged"
    session.execute(contacts_table.update().where(contacts_table.c.username == user)
                    .values(email=email, url=url, set_by=actor, updated_at=now))
    return "changed"


def _remove(session: Session, user: str) -> bool:
    return session.execute(contacts_table.delete().where(contacts_table.c.username == user)).rowcount > 0


# --- the admin's commands (audited) -------------------------------------------------------------


def audit_fields(user: str | None, email: str | None, url: str | None, clear: bool) -> dict[str, str]:
    """What the audit row of a contact change shows: the URL masked (it may carry a token)."""
    return {"user": (user or "").strip(), "email": (email or "").strip(), "url": mask((url or "").strip() or None) or "",
            "clear": "true" if clear else ""}


def set_contact(store: Any, user: str, email: str | None = None, url: str | None = None,
                clear: bool = False) -> dict[str, Any]:
    """Admin only, audited: give ``user`` a mail address or a notification URL (one of them), or
    ``clear`` their contact. Returns ``{"user", "contact", "channel", "outcome"}``."""
    from mlflow_governance.core.engine.transaction import Operation
    from mlflow_governance.core.identity import current_user

    actor = current_user()
    user = (user or "").strip()
    email = (email or "").strip() or None
    url = (url or "").strip() or None
    op = Operation(store, workflow.SET_CONTACT, actor, fields=audit_fields(user, email, url, clear))

    def body(session: Session) -> dict[str, Any]:
        denied = workflow.may_administer(workflow.SET_CONTACT, actor,
                                         roles.roles_of(session, actor) if actor else frozenset())
        if denied:
            raise op.refuse(session, denied.kind, denied.message)
        problem = None
        if not user:
            problem = "a user name is required"
        elif clear and (email or url):
            problem = "give a mail address, a notification URL or clear, not several"
        elif email and url:
            problem = "give a mail address or a notification URL, not both (a URL is used instead of mail)"
        elif not (clear or email or url):
            problem = "give a mail address (--email) or a notification URL (--url), or clear the contact"
        elif email:
            problem = check_email(email)
        elif url:
            problem = check_url(url)
        if problem:
            raise op.refuse(session, "invalid", problem)
        if clear:
            outcome = "cleared" if _remove(session, user) else "unchanged"
        else:
            outcome = _store(session, user, email, url, actor)
        op.record(session, role=workflow.ADMIN, outcome="allowed" if outcome != "unchanged" else "unchanged")
        return {"user": user, "contact": None if clear else (email or mask(url)),
                "channel": None if clear else (MAIL if email else URL), "outcome": outcome}

    return op.run(body)


def require_admin(store: Any, actor: str | None) -> None:
    """Refuse (403/401, exit 3) unless ``actor`` is the admin: listing contacts, sending a test."""
    from mlflow_governance.core.errors import GovernanceError

    with store.ManagedSessionMaker() as session:
        denied = workflow.may_administer(workflow.MANAGE_NOTIFICATIONS, actor,
                                         roles.roles_of(session, actor) if actor else frozenset())
    if denied:
        raise GovernanceError(denied.kind, denied.message)
