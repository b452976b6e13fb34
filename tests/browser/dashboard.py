#!/usr/bin/env python3
"""Drives headless Chromium over WebDriver (plain HTTP to chromedriver, no client library)
through the telswap demo and its dashboard. Run by tests/browser/run.sh; exits non-zero on the
first figure that disagrees with the API."""

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
failures = []


def http(method, url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Browser:
    def __init__(self, driver):
        self.driver = driver
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": "/usr/bin/chromium",
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--window-size=1280,1800",
                                 # Headless Chromium says "HeadlessChrome", which telswap rightly
                                 # treats as a bot (bots see the site's own number): present
                                 # the desktop browser a visitor would have.
                                 "--user-agent=Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                                 "(KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"],
                    },
                }
            }
        }
        status, body = http("POST", f"{driver}/session", caps)
        if status != 200:
            sys.exit(f"chromedriver refused a session: {body[:500]!r}")
        self.session = json.loads(body)["value"]["sessionId"]
        self.base = f"{driver}/session/{self.session}"

    def cmd(self, method, path, body=None):
        status, raw = http(method, self.base + path, body)
        value = json.loads(raw).get("value") if raw else None
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {value}")
        return value

    def go(self, url):
        self.cmd("POST", "/url", {"url": url})

    def url(self):
        return self.cmd("GET", "/url")

    def find(self, css):
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def find_all(self, css):
        return [e[ELEMENT] for e in self.cmd("POST", "/elements", {"using": "css selector", "value": css})]

    def text(self, css):
        return self.cmd("GET", f"/element/{self.find(css)}/text")

    def attr(self, element, name):
        return self.cmd("GET", f"/element/{element}/attribute/{name}")

    def type(self, css, text):
        e = self.find(css)
        self.cmd("POST", f"/element/{e}/clear", {})
        self.cmd("POST", f"/element/{e}/value", {"text": text})

    def click(self, css):
        self.cmd("POST", f"/element/{self.find(css)}/click", {})

    def select(self, css, option_text):
        for o in self.find_all(f"{css} option"):
            if self.cmd("GET", f"/element/{o}/text") == option_text:
                self.cmd("POST", f"/element/{o}/click", {})
                return
        raise RuntimeError(f"no option {option_text} in {css}")

    def source(self):
        return self.cmd("GET", "/source")

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.cmd("GET", "/screenshot")))

    def quit(self):
        http("DELETE", self.base)


def check(what, shown, want):
    if shown != want:
        failures.append(f"{what}: page shows {shown!r}, API says {want!r}")
        print(f"  MISMATCH {what}: page {shown!r} vs API {want!r}")
    else:
        print(f"  ok {what} = {shown}")


def fmt(v, kind):
    """The dashboard's formatting of a report value (admin::dashboard::cell)."""
    if v is None:
        return "–"
    if kind == "percent":
        return f"{v * 100:.1f}%"
    if kind == "money":
        return f"{v:.2f}"
    if kind == "seconds":
        s = round(v)
        return f"{s // 60}:{s % 60:02d}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and kind == "count"):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--demo-log", required=True)
    ap.add_argument("--telswap", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    log = open(a.demo_log).read()
    site = re.search(r"direct\s+(http://\S+?)/\s", log).group(1)
    admin = re.search(r"dashboard:\s+(http://\S+?)/\s", log).group(1)
    paid_url = re.search(r"Google Ads\s+(\S+)", log).group(1)
    organic_url = re.search(r"organic search\s+(\S+)", log).group(1)
    phone_token = re.search(r"--token (\S+)", log).group(1)

    def api(path):
        status, body = http("GET", admin + path, headers={"Authorization": f"Bearer {a.token}"})
        if status != 200:
            raise RuntimeError(f"API {path}: {status} {body[:300]!r}")
        return json.loads(body)

    b = Browser(a.driver)
    shots = 0

    def shot(name):
        nonlocal shots
        shots += 1
        b.screenshot(os.path.join(a.out, f"{shots:02d}-{name}.png"))

    try:
        # 1. Two visitors browse the site in the real browser; each calls the number it saw.
        calls = []
        for name, url, caller, duration in [
            ("paid", paid_url, "+14155550123", "95"),
            ("organic", organic_url, "+12125550188", "40"),
        ]:
            v = Browser(a.driver)  # a new visitor: a fresh browser profile
            b, b_admin = v, b
            b.go(url)
            b.go(site + "/services")
            shown = b.text("a.call")
            digits = re.sub(r"\D", "", shown)
            number = "+1" + digits[-10:]
            print(f"{name} visitor sees {shown} ({number})")
            if digits.endswith("5550100000"):
                failures.append(f"{name} visitor saw the site's own number")
            shot(f"site-{name}")
            b.quit()
            b = b_admin
            subprocess.run(
                [a.telswap, "call", "--server", site, "--to", number, "--from", caller,
                 "--duration", duration, "--token", phone_token],
                check=True, stdout=subprocess.DEVNULL,
            )
            calls.append(number)

        if len(set(calls)) != 2:
            failures.append(f"the paid and organic visitors saw the same number: {calls}")

        # 2. The dashboard sends a browser without the cookie to the login page.
        b.go(admin + "/calls")
        if "/login" not in b.url():
            failures.append(f"unauthenticated /calls did not redirect to login: {b.url()}")
        shot("login")
        b.type("input[name=token]", "wrong")
        b.click("form button")
        if "not the admin token" not in b.source():
            failures.append("a wrong token was not refused")
        b.type("input[name=token]", a.token)
        b.click("form button")
        print("logged in:", b.url())

        # 3. Every page, its figures against the API.
        b.go(admin + "/calls")
        shot("calls")
        api_calls = api("/api/calls")["calls"]
        check("calls listed", b.text('[data-figure="calls"]'), str(len(api_calls)))
        check("calls placed", len(api_calls), 2)

        for c in api_calls:
            b.go(f"{admin}/calls/{c['id']}")
            shot(f"call-{c['attribution'].get('channel') or 'none'}")
            check(f"call {c['id']} confidence", b.text('[data-figure="confidence"]'), c["confidence"])
            check(f"call {c['id']} touches", b.text('[data-figure="touches"]'), str(c["attribution"]["touches"]))

        # Record a sale on the paid call through the journey page's form.
        paid = next(c for c in api_calls if c["attribution"].get("channel") == "paid_search")
        b.go(f"{admin}/calls/{paid['id']}")
        b.select("select[name=kind]", "sale")
        b.type("input[name=value]", "240")
        b.click('form[action$="/outcome"] button')
        shot("call-after-outcome")
        after = api(f"/api/calls/{paid['id']}")
        check("outcome kind", (after["outcome"] or {}).get("kind"), "sale")
        check("outcome value", (after["outcome"] or {}).get("value"), 240.0)
        check("outcome on page", b.text('[data-figure="outcome"]'), "sale")

        b.go(admin + "/pools")
        shot("pools")
        for p in api("/api/pools")["pools"]:
            rows = b.find_all(f'tr[data-pool="{p["site"]}/{p["name"]}"] [data-figure]')
            for e in rows:
                key = b.attr(e, "data-figure")
                shown = b.cmd("GET", f"/element/{e}/text")
                want = "–" if p.get(key) is None else str(p[key])
                check(f"pool {p['name']} {key}", shown, want)

        b.go(admin + "/")
        shot("overview")
        names = ["overview"]
        for e in b.find_all('nav a[href^="/reports/"]'):
            name = b.attr(e, "href").split("/reports/")[1].split("?")[0]
            if name not in names:
                names.append(name)
        print("reports:", ", ".join(names))
        if len(names) < 13:
            failures.append(f"expected 13 reports in the navigation, found {names}")
        for name in names:
            if name != "overview":
                b.go(f"{admin}/reports/{name}")
            shot(f"report-{name}")
            r = api(f"/api/reports/{name}")
            kinds = {c["key"]: c["kind"] for c in r.get("columns", [])}
            for key, v in (r.get("totals") or {}).items():
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                shown = b.text(f'[data-figure="{key}"]')
                check(f"{name}.{key}", shown, fmt(v, kinds.get(key, "")))
            if "<svg" not in b.source() and "data-empty" not in b.source():
                failures.append(f"report {name} has no chart")

        b.go(admin + "/metrics")
        if "telswap_calls_total" not in b.source():
            failures.append("metrics page lacks telswap_calls_total")
    finally:
        b.quit()

    print(f"\n{shots} screenshots in {a.out}/")
    if failures:
        print("FAILED:")
        for f in failures:
            print("  -", f)
        sys.exit(1)
    print("browser test passed")


if __name__ == "__main__":
    main()
