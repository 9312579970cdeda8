#!/usr/bin/env python3
"""Drives headless Chromium through the developer portal over the DevTools protocol on a pipe
(--remote-debugging-pipe: no websocket library needed). Used by tests/portal_browser.rs.

Usage: portal_browser.py PORTAL_URL OUT_DIR CARD (the text of the catalogue link to follow)
Prints one JSON object with what it saw; exits non-zero (with the reason on stderr) when the
browser cannot be driven at all. The Rust test asserts on the JSON.
"""
import base64, json, os, subprocess, sys, tempfile, time

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DEADLINE = 60.0


class Browser:
    def __init__(self, profile):
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def fds():  # chromium reads commands on fd 3, writes answers on fd 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", "--user-data-dir=" + profile,
             "--remote-debugging-pipe", "about:blank"],
            # fds 3 and 4 are made in the child after the fork: keep them through exec.
            pass_fds=(3, 4), preexec_fn=fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def close(self):
        try:
            self.call("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _read(self):
        while b"\0" not in self.buf:
            chunk = os.read(self.from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_child, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, name):
        end = time.time() + DEADLINE
        while time.time() < end:
            for i, e in enumerate(self.events):
                if e.get("method") == name:
                    del self.events[i]
                    return e
            self.events.append(self._read())
        raise RuntimeError(f"no {name} event")

    def eval(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, url):
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def until(self, expr):
        """Polls a page condition (a readiness check on what the page shows) until true."""
        end = time.time() + DEADLINE
        while time.time() < end:
            v = self.eval(expr)
            if v:
                return v
            self.call("Runtime.evaluate", {"expression": "new Promise(r => requestAnimationFrame(r))", "awaitPromise": True})
        raise RuntimeError(f"page never showed: {expr}")

    def screenshot(self, path):
        r = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))

    def viewport(self, width, height, mobile):
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def main():
    base, out, card = sys.argv[1], sys.argv[2], sys.argv[3]
    seen = {}
    with tempfile.TemporaryDirectory() as profile:
        b = Browser(profile)
        try:
            target = b.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            b.session = b.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
            b.call("Page.enable")
            b.call("Runtime.enable")
            b.viewport(1280, 900, False)
            b.open(base)
            b.screenshot(os.path.join(out, "portal-desktop.png"))
            seen["indexTitle"] = b.eval("document.title")
            seen["h1"] = b.eval("document.querySelector('h1').textContent")
            # Keyboard: the first Tab lands on the skip link.
            b.call("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9})
            b.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9})
            seen["firstTab"] = b.eval("document.activeElement.textContent")
            # Every link on the page answers 200.
            seen["links"] = b.eval("""Promise.all([...new Set([...document.querySelectorAll('a[href]')]
                .map(a => a.href.split('#')[0]))].map(h => fetch(h).then(r => [h, r.status])))""")
            # Click through to the API that has the operation, as a user would.
            b.eval("[...document.querySelectorAll('.card h3 a')].find(a => a.textContent === %s).click()" % json.dumps(card))
            b.wait_event("Page.loadEventFired")
            seen["apiPage"] = b.eval("location.pathname")
            seen["unlabelled"] = b.eval("[...document.querySelectorAll('input,textarea')].filter(i => !document.querySelector(`label[for='${i.id}']`)).length")
            b.eval("""(() => { const f = document.querySelector('form.try[data-method="GET"]');
                f.querySelector('button').click(); return true; })()""")
            seen["tryResult"] = b.until("""(() => { const r = document.querySelector('form.try[data-method="GET"] .result');
                return r && r.querySelector('.status') ? r.innerText : null; })()""")
            b.screenshot(os.path.join(out, "portal-try.png"))
            # Phone width: nothing wider than the screen.
            b.viewport(375, 812, True)
            b.open(b.eval("location.href"))
            seen["phoneScrollWidth"] = b.eval("document.documentElement.scrollWidth")
            b.screenshot(os.path.join(out, "portal-phone.png"))
            b.open(base + "changelog")
            seen["changelog"] = b.eval("document.querySelector('main').innerText")
            seen["changelogScrollWidth"] = b.eval("document.documentElement.scrollWidth")
            b.screenshot(os.path.join(out, "portal-phone-changelog.png"))
        finally:
            b.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
