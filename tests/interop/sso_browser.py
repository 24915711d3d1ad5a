#!/usr/bin/env python3
"""A scripted browser for the single sign-on tests: follows an identity provider's real login form.

Modes (all print one JSON object on stdout; diagnostics go to stderr):

``sso_browser.py --user U --password P URL``
    What openconnect ``--external-browser`` runs (with the sso-v2 login URL as last argument):
    follows the redirects from the gateway to the provider, fills in the provider's login form,
    follows the redirects back through the gateway and stops at the gateway's redirect to
    ``http://localhost:29786/api/sso/…``, which it then requests from openconnect's listener
    (on ``[::1]``, where openconnect 9.01 listens).
``sso_browser.py --embedded GATEWAY --user U --password P [--post-token T] [--replay-return]
[--logout]``
    Cisco AnyConnect's embedded-browser mode, with AnyConnect's user agent: the AggAuth init, the
    browser leg until the ``<sso-v2-login-final>`` URL, the token from the cookie named by
    ``<sso-v2-token-cookie-name>``, and the ``auth-reply`` with ``<sso-token>``. Prints the
    session cookie, the token and any AggAuth error. ``--post-token`` posts that token instead
    of signing in; ``--replay-return`` requests the provider's return URL a second time;
    ``--logout`` then logs out (``GET /logout``) and follows the redirect to the provider.
SAML (all modes): a page whose form carries a ``SAMLResponse`` (the HTTP-POST binding, which a
    real browser submits by script) is POSTed with all its hidden fields; the login form is
    POSTed with its hidden fields too (SimpleSAMLphp's ``AuthState``). ``--capture PREFIX``
    prints ``{"url": ..., "fields": {...}}`` instead of POSTing such a form to a URL starting with
    PREFIX (a real IdP's signed response for a test without a gateway); ``--edit-saml OLD=>NEW``
    replaces OLD by NEW in the decoded ``SAMLResponse`` before POSTing it (a tampered assertion);
    ``--swap-saml FILE`` POSTs the ``SAMLResponse`` of a ``--capture`` output instead (a response
    to another login); ``--replay-return`` POSTs the SAML form a second time; ``--logout`` (embedded
    mode) then logs out in the browser: ``GET /logout`` with the session cookie, followed through
    the identity provider's single logout and back.
``sso_browser.py --mint ISSUER --client C --secret S --redirect-uri R --user U --password P``
    An authorization-code flow (PKCE) as client C, without the gateway: prints the ID token.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import secrets
import sys
import urllib.parse
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import httpx

CISCO_AGENT = "AnyConnect Linux_64 4.10.07061"
LISTENER = "http://localhost:29786"
_FORM_RE = re.compile(r'<form[^>]*action="([^"]+)"', re.IGNORECASE)
_MAX_HOPS = 20
_REFUSED = ("Invalid username or password", "Incorrect username or password")


def log(text: str) -> None:
    print(f"sso_browser: {text}", file=sys.stderr, flush=True)


class _HiddenFields(HTMLParser):
    """The first form's action and hidden inputs (SAML's POST form, SimpleSAMLphp's AuthState)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = a.get("action", "")
        elif (
            tag == "input"
            and self.action is not None
            and not self._done
            and a.get("type", "").lower() == "hidden"
            and a.get("name")
        ):
            self.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._done = True


def _hidden(text: str) -> _HiddenFields:
    parser = _HiddenFields()
    parser.feed(text)
    return parser


class Browser:
    """Follows redirects by hand (to see each hop) and fills in the provider's login form."""

    capture: str | None = None  # --capture: print the SAML form posted to this URL prefix
    edit_saml: str | None = None  # --edit-saml OLD=>NEW
    swap_saml: str | None = None  # --swap-saml FILE: post the SAMLResponse a --capture printed

    def __init__(self, user: str, password: str) -> None:
        self.client = httpx.Client(
            verify=False, timeout=20.0, headers={"User-Agent": "Mozilla/5.0"}
        )
        self.user = user
        self.password = password
        self.visited: list[str] = []
        self.saml_posts: list[tuple[str, dict[str, str]]] = []

    def run(self, url: str, *, stop: str) -> tuple[str, httpx.Response | None]:
        """Follow from ``url`` until a redirect to a URL starting with ``stop``."""
        method, data = "GET", None
        for _ in range(_MAX_HOPS):
            self.visited.append(url)
            response = self.client.request(method, url, data=data)
            log(f"{method} {url.split('?')[0]} -> {response.status_code}")
            method, data = "GET", None
            if response.is_redirect:
                url = urllib.parse.urljoin(url, response.headers["location"])
                if url.startswith(stop):
                    return url, response
                continue
            form = _FORM_RE.search(response.text) if response.status_code == 200 else None
            if form is not None and 'name="password"' in response.text:
                if any(m in response.text for m in _REFUSED):
                    raise SystemExit("the provider refused the credentials")
                url = urllib.parse.urljoin(url, form.group(1).replace("&amp;", "&"))
                hidden = _hidden(response.text).fields
                method, data = "POST", {**hidden, "username": self.user, "password": self.password}
                continue
            saml = _hidden(response.text) if response.status_code == 200 else None
            if saml is not None and saml.action and "SAMLResponse" in saml.fields:
                url, method, data = urllib.parse.urljoin(url, saml.action), "POST", saml.fields
                self._saml_form(url, data)
                continue
            return url, response
        raise SystemExit("too many redirects")

    def _saml_form(self, url: str, fields: dict[str, str]) -> None:
        """The SAML HTTP-POST form: capture it, or edit the response before it is POSTed."""
        if self.capture is not None and url.startswith(self.capture):
            print(json.dumps({"url": url, "fields": fields}))
            raise SystemExit(0)
        if self.edit_saml:
            old, _, new = self.edit_saml.partition("=>")
            decoded = base64.b64decode(fields["SAMLResponse"]).decode()
            if old not in decoded:
                raise SystemExit(f"--edit-saml: {old!r} is not in the SAML response")
            fields["SAMLResponse"] = base64.b64encode(decoded.replace(old, new).encode()).decode()
            log(f"edited the SAML response: {old!r} -> {new!r}")
        if self.swap_saml:
            with open(self.swap_saml) as f:
                fields["SAMLResponse"] = json.load(f)["fields"]["SAMLResponse"]
            log("posting the SAML response of another login")
        self.saml_posts.append((url, dict(fields)))


def external(args: argparse.Namespace) -> int:
    browser = Browser(args.user, args.password)
    browser.capture, browser.edit_saml = args.capture, args.edit_saml
    url, response = browser.run(args.url, stop=LISTENER)
    if not url.startswith(LISTENER):
        text = response.text if response is not None else ""
        print(json.dumps({"error": re.sub(r"<[^>]+>", " ", text).strip()}))
        return 1
    # openconnect 9.01 listens on [::1]:29786 only.
    local = "http://[::1]:29786" + url[len(LISTENER) :]
    answer = httpx.get(local, timeout=20.0)
    log(f"GET {LISTENER}/api/sso/... -> {answer.status_code}")
    print(json.dumps({"listener_status": answer.status_code, "visited": browser.visited}))
    return 0


def _init_xml(url: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="init" '
        'aggregate-auth-version="2"><version who="vpn">4.10.07061</version>'
        "<device-id>linux-64</device-id><capabilities><auth-method>single-sign-on-v2"
        f"</auth-method></capabilities><group-access>{url}</group-access></config-auth>"
    ).encode()


def _reply_xml(opaque: ET.Element | None, token: str) -> bytes:
    opaque_text = ET.tostring(opaque, encoding="unicode") if opaque is not None else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-reply" '
        f'aggregate-auth-version="2"><version who="vpn">4.10.07061</version>{opaque_text}'
        f"<auth><sso-token>{token}</sso-token></auth></config-auth>"
    ).encode()


def embedded(args: argparse.Namespace) -> int:
    headers = {"User-Agent": CISCO_AGENT, "X-Aggregate-Auth": "1", "X-Transcend-Version": "1"}
    gateway = httpx.Client(verify=False, timeout=20.0, headers=headers)
    form = ET.fromstring(
        gateway.post(args.embedded + "/", content=_init_xml(args.embedded)).content
    )
    auth = form.find("auth")
    if auth is None or auth.findtext("sso-v2-login") is None:
        print(json.dumps({"error": "no sso-v2 form", "form": ET.tostring(form, "unicode")}))
        return 1
    result: dict[str, object] = {
        "browser_mode": auth.findtext("sso-v2-browser-mode"),
        "final": auth.findtext("sso-v2-login-final"),
    }
    token = args.post_token
    if token is None:
        browser = Browser(args.user, args.password)
        browser.capture, browser.swap_saml = args.capture, args.swap_saml
        final = auth.findtext("sso-v2-login-final") or ""
        _url, _response = browser.run(auth.findtext("sso-v2-login") or "", stop=final)
        cookie_name = auth.findtext("sso-v2-token-cookie-name") or ""
        error_name = auth.findtext("sso-v2-error-cookie-name") or ""
        token = browser.client.cookies.get(cookie_name)
        result["error_cookie"] = browser.client.cookies.get(error_name)
        if args.replay_return and browser.saml_posts:  # SAML: the same form POSTed again.
            again = browser.client.post(browser.saml_posts[-1][0], data=browser.saml_posts[-1][1])
            result["replay_status"] = again.status_code
            result["replay_text"] = re.sub(r"<[^>]+>", " ", again.text).strip()
        elif args.replay_return:
            returns = [u for u in browser.visited if "/+CSCOE+/sso/oidc/return" in u]
            again = browser.client.get(returns[-1])
            result["replay_status"] = again.status_code
            result["replay_text"] = re.sub(r"<[^>]+>", " ", again.text).strip()
    result["token"] = token
    if token:
        reply = ET.fromstring(
            gateway.post(
                args.embedded + "/", content=_reply_xml(form.find("opaque"), token)
            ).content
        )
        result["session_token"] = reply.findtext("session-token")
        error = reply.find("auth/error")
        result["error"] = error.get("param1") if error is not None else None
        if args.logout and args.post_token is None and result["session_token"]:
            # The browser's logout: GET /logout with the session cookie, then wherever the
            # gateway sends it (the identity provider's single logout service, and back).
            browser.client.cookies.set("webvpn", str(result["session_token"]))
            _url, response = browser.run(args.embedded + "/logout", stop="\0")
            result["logout_visited"] = browser.visited[-4:]
            result["logout_status"] = response.status_code if response is not None else None
            text = response.text if response is not None else ""
            result["logout_text"] = re.sub(r"<[^>]+>", " ", text).strip()[:500]
    print(json.dumps(result))
    return 0


def mint(args: argparse.Namespace) -> int:
    browser = Browser(args.user, args.password)
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    query = urllib.parse.urlencode({
        "response_type": "code",
        "client_id": args.client,
        "redirect_uri": args.redirect_uri,
        "scope": "openid profile email",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    })  # fmt: skip
    url, _response = browser.run(f"{args.mint}/auth?{query}", stop=args.redirect_uri)
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["code"]
    answer = httpx.post(
        f"{args.mint}/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": args.redirect_uri,
              "code_verifier": verifier},
        auth=(args.client, args.secret),
        timeout=20.0,
    )  # fmt: skip
    answer.raise_for_status()
    print(json.dumps({"id_token": answer.json()["id_token"]}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--embedded")
    parser.add_argument("--post-token")
    parser.add_argument("--replay-return", action="store_true")
    parser.add_argument("--mint")
    parser.add_argument("--client")
    parser.add_argument("--secret")
    parser.add_argument("--redirect-uri")
    parser.add_argument("--capture")
    parser.add_argument("--edit-saml")
    parser.add_argument("--swap-saml")
    parser.add_argument("--logout", action="store_true")
    parser.add_argument("url", nargs="?")
    args = parser.parse_args()
    if args.embedded:
        return embedded(args)
    if args.mint:
        return mint(args)
    return external(args)


if __name__ == "__main__":
    sys.exit(main())
