"""The browser sign-in of the governance server: one form, then a session cookie.

``GET /governance/signin`` shows the form (a page opened without credentials is redirected
here, see `mlflow_governance.server.credentials`), ``POST`` checks the password like any request
(the lock-out applies) and sets the signed ``mlgov_session`` cookie, then returns to the page
asked for (a path on this server only). ``POST /governance/signout`` clears it. Both forms carry
a CSRF token. These two routes are the only ones answered before authentication: a Flask hook
registered ahead of MLflow's basic-auth hook serves them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, redirect, request

from mlflow_governance.server import credentials
from mlflow_governance.server.credentials import SIGNIN_PAGE, SIGNOUT_PAGE, SignInLocked


def _local(target: str | None) -> str:
    """``target`` if it is a path on this server, else the approvals inbox (no open redirect)."""
    from mlflow_governance.server.pages import PAGE

    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return PAGE
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else PAGE


def _lifetime() -> str:
    seconds = credentials.settings().session_seconds
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min" if seconds % 60 == 0 \
        else f"{seconds} s"


def _form(status: int = 200, error: str | None = None, username: str = "", target: str | None = None,
          headers: dict[str, str] | None = None) -> Response:
    from mlflow_governance.server.pages import render_template

    response = render_template("signin.html", status, signin=SIGNIN_PAGE, error=error, username=username,
                               next=_local(target if target is not None else request.args.get("next")),
                               lifetime=_lifetime(), user=None, roles=[], flashes=[])
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


def _csrf_ok() -> bool:
    from flask_wtf.csrf import CSRFError, ValidationError, validate_csrf

    try:
        validate_csrf(request.form.get("csrf_token"))
    except (ValidationError, CSRFError):
        return False
    return True


def signin() -> Response:
    if request.method == "GET":
        return _form()
    username = (request.form.get("username") or "").strip()
    password = request.form.get("password") or ""
    target = request.form.get("next")
    if not _csrf_ok():
        return _form(400, "the form was not accepted (it was open too long, or it did not come from this page): "
                          "sign in again", username, target)
    if not username or not password:
        return _form(400, "enter your user name and your password", username, target)
    try:
        ok = credentials.verify_password(username, password, credentials.address())
    except SignInLocked as exc:
        return _form(423, exc.message, username, target, {"Retry-After": str(exc.retry_after)})
    if not ok:
        return _form(401, "wrong user name or password", username, target)
    return credentials.set_session_cookie(redirect(_local(target), code=303), username)


def signout() -> Response:
    if not _csrf_ok():
        return _form(400, "the sign-out was not accepted: use the Sign out button of a page of this server")
    return credentials.clear_session_cookie(redirect(SIGNIN_PAGE, code=303))


def register(app: Flask) -> None:
    """Add the sign-in routes, answered ahead of basic-auth (call before ``auth.create_app``)."""
    app.add_url_rule(SIGNIN_PAGE, endpoint="mlgov_signin", view_func=signin, methods=["GET", "POST"])
    app.add_url_rule(SIGNOUT_PAGE, endpoint="mlgov_signout", view_func=signout, methods=["POST"])

    @app.before_request
    def _answer_signin_before_authentication():
        if request.path == SIGNIN_PAGE and request.method in ("GET", "POST"):
            return signin()
        if request.path == SIGNOUT_PAGE and request.method == "POST":
            return signout()
        return None
