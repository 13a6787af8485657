"""Who is at this browser: an id that outlives reloads and second tabs, the name the lecturer sees,
and whether this session belongs to the lecturer.

The id is a random cookie that app.py's server sets on the first page load (HttpOnly, a year);
run folders store only a hash of it, so reading the runs root never reveals one browser's key
to another. Without the cookie (AppTest, a browser refusing cookies) a session keeps its own id."""
from __future__ import annotations

import hashlib
import hmac
import html
import json
import os
import re
import secrets
import time

import streamlit as st

from lenet_core.checkpoint import atomic_write
from lenet_core.runs import runs_root

COOKIE = "lenet_browser"
NAME_MAX = 40


def owner_of(token: str | None) -> str | None:
    """The owner id that run folders store for a browser's cookie (None for no cookie)."""
    if not token:
        return None
    return hashlib.sha256(token.encode()).hexdigest()[:20]


def owner() -> str:
    """This browser's owner id."""
    try:
        token = st.context.cookies.get(COOKIE)
    except Exception:  # no request behind this session
        token = None
    if not isinstance(token, str) or not token:  # AppTest has no real cookies either
        token = None
    token = token or st.session_state.setdefault("lenet_session_token", secrets.token_urlsafe(24))
    return owner_of(token)


def _people_file(who: str):
    return runs_root() / ".people" / f"{who}.json"


def clean_name(text: str) -> str:
    """A display name as plain text: printable, single-line, at most NAME_MAX characters."""
    text = re.sub(r"\s+", " ", "".join(ch for ch in str(text) if ch.isprintable())).strip()
    return text[:NAME_MAX]


def display_name(who: str | None = None) -> str:
    who = who or owner()
    try:
        return clean_name(json.loads(_people_file(who).read_text()).get("name", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def set_display_name(name: str, who: str | None = None) -> str:
    name = clean_name(name)
    data = json.dumps({"name": name}).encode()
    atomic_write(_people_file(who or owner()), lambda f: f.write(data))
    return name


def markdown_text(text: str) -> str:
    """User-supplied text (a name, a run name) made safe to put in Markdown: no HTML, no formatting."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", html.escape(str(text), quote=False))


TOKEN_MIN = 16          # characters: a lecturer token a room of students cannot guess in a lecture
SIGN_IN_DELAY_MAX = 8.0  # seconds: each wrong token in a session doubles the wait before the next answer


def lecturer_token_problem() -> str:
    """Why LENET_LECTURER_TOKEN cannot be used ("" when it can, or is not set)."""
    token = os.environ.get("LENET_LECTURER_TOKEN") or ""
    if token and len(token) < TOKEN_MIN:
        return (f"LENET_LECTURER_TOKEN is {len(token)} characters; a lecturer token needs at least {TOKEN_MIN}, or "
                "a room could guess it. Make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(24))'")
    return ""


def lecturer_token() -> str | None:
    """The lecturer's token, when one is set and long enough (the server refuses to start otherwise)."""
    token = os.environ.get("LENET_LECTURER_TOKEN") or None
    return None if lecturer_token_problem() else token


def is_lecturer() -> bool:
    return bool(lecturer_token()) and st.session_state.get("lenet_lecturer") is True


def sign_in(token: str) -> bool:
    """The lecturer's token, compared in constant time; remembered for this session. Each wrong
    try in a session makes the next answer wait twice as long (up to SIGN_IN_DELAY_MAX)."""
    failures = st.session_state.get("lenet_lecturer_failures", 0)
    if failures:
        time.sleep(min(SIGN_IN_DELAY_MAX, 0.25 * 2 ** failures))
    expected = lecturer_token()
    ok = bool(expected) and hmac.compare_digest(str(token).encode(), expected.encode())
    st.session_state["lenet_lecturer"] = ok
    st.session_state["lenet_lecturer_failures"] = 0 if ok else failures + 1
    return ok
