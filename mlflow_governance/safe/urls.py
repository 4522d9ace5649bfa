"""One way to show a URL without its secrets: `mask_url`.

Database URLs (SQLAlchemy's ``dialect+driver://user:password@host:port/database?key=value``) and
plain http(s) URLs carry secrets in two places: the password of the authority, and query values
such as ``?password=...``, ``?sslpassword=...`` or ``?token=...`` (libpq, most drivers and most
HTTP APIs accept them there). Every URL the project shows (messages, logs, run params and tags,
``/status``) goes through `mask_url`, which hides both, so no display path can forget the query.

It is deliberately stricter than SQLAlchemy's ``render_as_string(hide_password=True)`` (which
leaves the query as it is) and than ``urllib.parse`` (which ends the authority at the first ``/``,
where SQLAlchemy reads a password up to the first ``@``): when the two readings differ, everything
either of them could take for a password is hidden. It never raises: anything that is not a URL
becomes `UNPARSABLE`, never echoed (it may be a password given in the wrong place).

This module imports nothing else of the package, so any module (the sidecar, the servers, the
CLI, the MLproject entry points) can use it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

MASK = "***"
UNPARSABLE = "<unparsable URL>"

# Query (or fragment, matrix) parameters: a key after ?, &, ; or #, up to =, and its value.
_PARAM = re.compile(r"(?P<sep>[?&;#])(?P<key>[^=&;#?]*)=(?P<value>[^&;#]*)")
_SCHEME = re.compile(r"^[A-Za-z][\w+.\-]*$")
# SQLAlchemy's reading of the authority: a user name without ':' or '/', then ':' and a
# password that runs up to the first '@' (it may hold '/', '?' and ':').
_SQLALCHEMY_USERINFO = re.compile(r"(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@")
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "apikey", "credential", "signature", "private")


def is_secret_key(key: str) -> bool:
    """Whether a query key names a secret: password, passwd, pwd, sslpassword, secret, token,
    access_token, key, api_key, sslkey, auth..., sig, credential..., case and ``_``/``-`` ignored."""
    try:
        name = re.sub(r"[\s_\-.]", "", unquote_plus(key)).lower()
    except Exception:  # noqa: BLE001 - an undecodable key is treated as a secret
        return True
    if not name:
        return False
    return (any(word in name for word in _SECRET_WORDS) or name.endswith("key") or name.startswith("auth")
            or name in ("sig", "sas", "pw"))


def _split_authority(rest: str) -> tuple[str, str, str] | None:
    """(user, password-or-None, what follows the ``@``) of the text after ``scheme://``, or None
    when it has no user part. The wider of SQLAlchemy's and the URL standard's readings wins."""
    end = 0
    found = _SQLALCHEMY_USERINFO.match(rest)
    if found:
        end = found.end()
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in netloc:
        end = max(end, netloc.rfind("@") + 1)
    if not end:
        return None
    userinfo = rest[: end - 1]
    user, colon, password = userinfo.partition(":")
    return user, (password if colon else None), rest[end:]


def _mask_params(text: str) -> str:
    def hide(match: re.Match) -> str:
        value = match.group("value")
        if is_secret_key(match.group("key")) and value:
            return f"{match.group('sep')}{match.group('key')}={MASK}"
        if "://" in value:  # a URL given as a value (a redirect, a proxy) may carry its own secrets
            return f"{match.group('sep')}{match.group('key')}={mask_url(value)}"
        return match.group(0)

    return _PARAM.sub(hide, text)


def mask_url(url: str) -> str:
    """``url`` with the password of its authority and the values of its secret-looking query keys
    replaced by ``***`` (SQLAlchemy and http(s) URLs alike); `UNPARSABLE` for what is not a URL.

    ``postgresql://erin:s3cret@db:5432/airlines?sslmode=require&sslpassword=x`` ->
    ``postgresql://erin:***@db:5432/airlines?sslmode=require&sslpassword=***``. Never raises.
    """
    try:
        if url is None:
            return UNPARSABLE
        text = str(url)
        if not text.strip():
            return ""
        scheme, sep, rest = text.partition("://")
        if not sep or not _SCHEME.match(scheme) or any(c in text for c in "\r\n\x00"):
            return UNPARSABLE
        user_part = ""
        authority = _split_authority(rest)
        if authority is not None:
            user, password, rest = authority
            user_part = f"{user}:{MASK}@" if password else f"{user}:@" if password is not None else f"{user}@"
        return f"{scheme}://{user_part}{_mask_params(rest)}"
    except Exception:  # noqa: BLE001 - a display helper must never fail
        return UNPARSABLE


def has_secret(url: str) -> bool:
    """Whether ``url`` carries a secret that `mask_url` would hide (a password in the authority
    or a secret-looking query value); True for what is not a URL but holds an ``@`` or ``=``."""
    try:
        text = str(url or "")
        if not text.strip():
            return False
        masked = mask_url(text)
        if masked == UNPARSABLE:
            return "@" in text or "=" in text
        return masked != text
    except Exception:  # noqa: BLE001
        return True


_URL_IN_TEXT = re.compile(r"[A-Za-z][\w+.\-]*://[^\s'\"<>]+")


def secrets_of(url: str) -> list[str]:
    """The secret values `mask_url` hides in ``url`` (raw and percent-decoded), longest first."""
    found: set[str] = set()
    try:
        scheme, sep, rest = str(url or "").partition("://")
        if not sep:
            return []
        authority = _split_authority(rest)
        if authority is not None:
            rest = authority[2]
            if authority[1]:
                found.add(authority[1])
        for match in _PARAM.finditer(rest):
            if is_secret_key(match.group("key")) and match.group("value"):
                found.add(match.group("value"))
        found |= {unquote_plus(s) for s in found}
    except Exception:  # noqa: BLE001
        pass
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text: str, *urls: str) -> str:
    """``text`` (an error message, a log line) with every URL in it masked and every secret of
    ``urls`` removed wherever it appears (a driver may quote a password outside a URL)."""
    try:
        out = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), str(text))
        for url in urls:
            for secret in secrets_of(url):
                if len(secret) >= 3:  # "a" or "ab" would mangle the message, and guess nothing
                    out = out.replace(secret, MASK)
        return out
    except Exception:  # noqa: BLE001
        return "(message withheld: it could not be cleared of secrets)"
