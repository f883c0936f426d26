#!/usr/bin/env python3
"""End-to-end test of the tray app (run by scripts/tray-test inside
`xvfb-run -a dbus-run-session --`).

Starts a StatusNotifierWatcher, dunst and the built `lockstep` app with
throw-away HOME/XDG folders; registers two apps with `lockstep-hub apps
add` (auth stays on: the apps get real tokens from the hub's /oauth/token);
connects them over WebSocket; publishes Patient-open; and checks what the
tray exports over D-Bus (label, menu), the notifications sent, the
discovery file, single instance, Start at login saved to the settings
file, that "Quit" from the menu stops the hub cleanly, and that a broken
IT settings file keeps the hub stopped and names the file. Screenshots and logs go to artifacts/tray/.

Every wait is on a condition with a deadline, never a fixed sleep.
"""
import asyncio
import json
import os
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import websockets
from gi.repository import Gio, GLib

APP, HUB_CLI = sys.argv[1], sys.argv[2]
ART = os.path.abspath("artifacts/tray")
os.makedirs(ART, exist_ok=True)
HERE = os.path.dirname(os.path.abspath(__file__))
DEADLINE = 30.0


def step(msg):
    print(f"--- {msg}", flush=True)


def wait_for(what, cond, timeout=DEADLINE, interval=0.1):
    """Polls `cond` until it returns something truthy; fails after timeout."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = cond()
        except Exception as e:  # not there yet
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot(name):
    subprocess.run(["import", "-window", "root", f"{ART}/{name}.png"], check=False)


# --- a private environment -------------------------------------------------
home = tempfile.mkdtemp(prefix="lockstep-tray-")
env = dict(os.environ)
env.update({
    "HOME": home,
    "XDG_CONFIG_HOME": f"{home}/config",
    "XDG_DATA_HOME": f"{home}/data",
    "XDG_STATE_HOME": f"{home}/state",
    "XDG_RUNTIME_DIR": f"{home}/run",
    "LOCKSTEP_LISTEN": f"127.0.0.1:{free_port()}",
    # IT's settings file: none at first (a broken one at the end).
    "LOCKSTEP_SYSTEM_CONFIG": f"{home}/etc/lockstep/lockstep.toml",
    # No keyring daemon here: client secrets in the data folder (0600).
    "LOCKSTEP_SECRET_STORE": "file",
    "RUST_LOG": "info",
})
os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700)
# The desktop's URL handler: xdg-open would start whatever browser the
# machine has (Chromium refuses to run as root). This one first on PATH
# notes the URL; the test then uses the link with a real HTTP client.
opened = f"{home}/opened-urls.txt"
os.makedirs(f"{home}/bin")
with open(f"{home}/bin/xdg-open", "w") as f:
    f.write(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{opened}"\n')
os.chmod(f"{home}/bin/xdg-open", 0o755)
env["PATH"] = f"{home}/bin:{env['PATH']}"
data_dir = f"{home}/data/lockstep"
procs = []


def spawn(args, log, **kw):
    p = subprocess.Popen(args, env=env, stdout=kw.pop("stdout", open(f"{ART}/{log}", "w")),
                         stderr=subprocess.STDOUT, **kw)
    procs.append(p)
    return p


def register(name):
    out = subprocess.run([HUB_CLI, "apps", "add", name, "--data-dir", data_dir,
                          "--secret-store", "file"], env=env, check=True,
                         capture_output=True, text=True).stdout
    fields = dict(re.findall(r"^(client_id|client_secret):\s+(\S+)$", out, re.M))
    return fields["client_id"], fields["client_secret"]


# --- D-Bus helpers ---------------------------------------------------------
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)


def dbus_call(service, path, iface, method, sig, args, reply):
    v = bus.call_sync(service, path, iface, method,
                      GLib.Variant(sig, args) if sig else None,
                      GLib.VariantType(reply) if reply else None, Gio.DBusCallFlags.NONE, 5000, None)
    return v.unpack()


def prop(service, path, name):
    (v,) = dbus_call(service, path, "org.freedesktop.DBus.Properties", "Get", "(ss)",
                     ("org.kde.StatusNotifierItem", name), "(v)")
    return v


def shown(label):
    """A dbusmenu label as the user reads it: `_x` marks a mnemonic and
    `__` is one underscore (a temp path with `_` in it failed before)."""
    return re.sub(r"_(_?)", lambda m: m.group(1), label)


def layout(service, menu):
    _rev, root = dbus_call(service, menu, "com.canonical.dbusmenu", "GetLayout", "(iias)",
                           (0, -1, []), "(u(ia{sv}av))")

    def walk(node, depth=0):
        ident, props, children = node
        out = []
        if depth:
            out.append((depth, ident, shown(props.get("label", "---" if props.get("type") == "separator" else "")),
                        props.get("enabled", True)))
        for c in children:
            out.extend(walk(c, depth + 1))
        return out
    return walk(root)


def click(service, menu, label):
    """Clicks the item labelled `label`. The app rebuilds its menu on every
    change (new item ids), so a rebuild between reading the layout and the
    click means: read it again and retry."""
    def attempt():
        ident = next(i for _, i, l, _ in layout(service, menu) if l == label)
        try:
            dbus_call(service, menu, "com.canonical.dbusmenu", "Event", "(isvu)",
                      (ident, "clicked", GLib.Variant("i", 0), 0), None)
            return True
        except GLib.Error as e:
            if "does not refer to a menu item" in str(e):
                return False
            raise
    wait_for(f"a click on {label!r}", attempt)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get_once(url):
    """GET without following redirects (the login's 303 is what the test
    checks, not where it leads): the status and the headers."""
    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=10) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


# --- FHIRcast clients ------------------------------------------------------
def post(url, data, headers):
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def open_patient(hub_url, bearer, topic, event_id, mrn, family, given):
    """Publishes Patient-open for patient p-MRN (name and MRN as a clinician reads them)."""
    post(hub_url, json.dumps({
        "timestamp": "2026-11-22T10:00:00Z", "id": event_id,
        "event": {"hub.topic": topic, "hub.event": "Patient-open", "context": [
            {"key": "patient", "resource": {"resourceType": "Patient", "id": f"p-{mrn}",
             "name": [{"family": family, "given": [given]}],
             "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": mrn}]}}]},
    }).encode(), {**bearer, "Content-Type": "application/json"})


async def connect_app(hub_url, base, name, client):
    token = post(f"{base}/oauth/token", urllib.parse.urlencode({
        "grant_type": "client_credentials", "client_id": client[0], "client_secret": client[1],
    }).encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    topic = token["hub.topic"]
    sub = post(hub_url, urllib.parse.urlencode({
        "hub.channel.type": "websocket", "hub.mode": "subscribe", "hub.topic": topic,
        "hub.events": "Patient-open,Patient-close", "subscriber.name": name,
    }).encode(), {**bearer, "Content-Type": "application/x-www-form-urlencoded"})
    ws = await websockets.connect(sub["hub.channel.endpoint"])
    confirmation = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert confirmation.get("hub.mode") == "subscribe", confirmation
    return ws, topic, bearer


async def main():
    step("start the watcher, dunst, dbus-monitor and the app")
    pacs, reporting = register("PACS viewer"), register("Reporting")
    watcher = spawn([sys.executable, f"{HERE}/sni_watcher.py"], "watcher.log", stdout=subprocess.PIPE, text=True)
    assert watcher.stdout.readline().strip() == "watcher ready"
    spawn(["dunst"], "dunst.log")
    monitor = spawn(["dbus-monitor", "--session",
                     "interface='org.freedesktop.Notifications',member='Notify'"], "notifications.log")
    app = spawn([APP, "--show-dashboard"], "app.log")
    line = await asyncio.wait_for(asyncio.to_thread(watcher.stdout.readline), DEADLINE)
    _, service, obj = line.split()
    menu = prop(service, obj, "Menu")
    print(f"tray item {service} {obj}")
    label = lambda: prop(service, obj, "XAyatanaLabel")
    wait_for("the idle label", lambda: label() == "no context · 0 apps")

    def icon_state(want):
        """The exported icon (a PNG path) matches icons/<want>.png: same
        colour inside the ring; a copy is kept with the artifacts."""
        src = f"{HERE}/../../src-tauri/icons/{want}.png"
        colour = lambda path: subprocess.run(
            ["convert", path, "-resize", "64x64!", "-format", "%[hex:p{12,32}]", "info:"],
            capture_output=True, text=True).stdout.strip()
        path = wait_for(f"the {want} icon", lambda: (lambda p: colour(p) == colour(src) and p)(
            prop(service, obj, "IconName")))
        subprocess.run(["cp", path, f"{ART}/tray-icon-{want}.png"], check=False)
    icon_state("idle")

    step("discovery file: private, names the hub")
    disc_path = f"{env['XDG_RUNTIME_DIR']}/lockstep/hub.json"
    disc = wait_for("the discovery file", lambda: json.load(open(disc_path)))
    assert stat.S_IMODE(os.stat(disc_path).st_mode) == 0o600, oct(os.stat(disc_path).st_mode)
    hub_url = disc["hubUrl"]
    base = hub_url.rsplit("/fhircast/", 1)[0]
    assert base == f"http://{env['LOCKSTEP_LISTEN']}", disc

    step("a second launch exits at once and leaves the first running")
    second = subprocess.run([APP], env=env, timeout=DEADLINE, capture_output=True)
    assert second.returncode == 0, second
    assert app.poll() is None

    step("two apps connect")
    ws_a, topic, bearer = await connect_app(hub_url, base, "PACS viewer", pacs)
    assert topic == disc["topic"], (topic, disc)
    ws_b, _, _ = await connect_app(hub_url, base, "Reporting", reporting)
    wait_for("2 apps in the label", lambda: label() == "no context · 2 apps")
    icon_state("linked")
    items = layout(service, menu)
    labels = [l for _, _, l, _ in items]
    assert "Connected apps (2)" in labels, labels
    # Each app's sync state, in the hub's words (issue 15).
    assert "PACS viewer — In sync" in labels and "Reporting — In sync" in labels, labels
    assert "Patient-open" in labels, labels

    step("publish Patient-open; Reporting refuses it (ACK 500)")
    event_id = "e2e-open-1"
    open_patient(hub_url, bearer, topic, event_id, "12345", "Doe", "John")
    for ws, status in ((ws_a, 200), (ws_b, 500)):
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["event"]["hub.event"] == "Patient-open", frame
        await ws.send(json.dumps({"id": frame["id"], "status": status}))
    want = "DOE, John · MRN 12345 · 1 app"
    wait_for(f"label {want!r}", lambda: label() == want)
    items = layout(service, menu)
    labels = [l for _, _, l, _ in items]
    assert labels[0] == "Context: DOE, John · MRN 12345", labels
    assert "Connected apps (1)" in labels, labels
    # The icon the tray exported is the attention one (the SyncError).
    icon_state("attention")
    with open(f"{ART}/menu.txt", "w") as f:
        for depth, ident, l, enabled in items:
            f.write(f"{'  ' * (depth - 1)}{l}{'' if enabled else '  (disabled)'}  [{ident}]\n")

    step("notifications: connected, and the SyncError naming app and event")
    notes = lambda: open(f"{ART}/notifications.log").read()
    wait_for("'PACS viewer connected'", lambda: "PACS viewer connected" in notes())
    wait_for("'Reporting failed to follow'", lambda: "Reporting failed to follow" in notes())
    assert "Patient-open: " in notes()
    assert "12345" not in notes() and "Doe" not in notes(), "patient data in a notification"
    dunst = subprocess.run(["dunstctl", "count", "displayed"], env=env, capture_output=True, text=True)
    print(f"dunst displayed: {dunst.stdout.strip()}")

    step("screenshots")
    # The window logs when the hub's page has loaded (after the one-time
    # login redirect); the live view then shows the context.
    wait_for("the dashboard page", lambda: re.search(r"dashboard loaded.*path.*/ui/",
                                                      open(f"{ART}/app.log").read()), timeout=90)
    # The load event comes before the first paint: take it again until
    # the window's left part (no notifications there) is no longer blank.
    def drawn():
        screenshot("dashboard")
        spread = subprocess.run(["convert", f"{ART}/dashboard.png", "-crop", "900x700+0+0", "+repage",
                                 "-format", "%[fx:standard_deviation]", "info:"],
                                capture_output=True, text=True).stdout.strip()
        return float(spread or 0) > 0.02
    wait_for("the dashboard drawn", drawn, timeout=30, interval=0.5)

    step("Open dashboard in browser hands the desktop a one-time link")
    click(service, menu, "Open dashboard in browser")
    link = wait_for("a URL handed to xdg-open", lambda: open(opened).read().split())[-1]
    assert link.startswith(f"{base}/admin/login?code="), link
    code, headers = get_once(link)
    assert code == 303 and headers["Location"] == "/ui/", (code, headers)
    assert "HttpOnly" in headers["Set-Cookie"], headers
    code, _ = get_once(link)
    assert code == 401, f"the link worked twice: {code}"

    step("Copy hub URL and Copy topic put them on the clipboard")
    clipboard = lambda: subprocess.run(["xclip", "-o", "-selection", "clipboard"], env=env,
                                       capture_output=True, text=True, timeout=10).stdout
    click(service, menu, "Copy hub URL")
    wait_for("the hub URL on the clipboard", lambda: clipboard() == hub_url)
    click(service, menu, "Copy topic")
    wait_for("the topic on the clipboard", lambda: clipboard() == topic)

    step("Pause sync holds a context change; Resume sync delivers it")
    click(service, menu, "Pause sync")
    wait_for("the paused label", lambda: label().endswith(" · paused"))
    wait_for("'Resume sync' in the menu",
             lambda: any(l == "Resume sync" for _, _, l, _ in layout(service, menu)))
    held = "e2e-open-2"
    open_patient(hub_url, bearer, topic, held, "67890", "Roe", "Jane")
    click(service, menu, "Resume sync")
    while True:  # the held event, then the current context replayed; ACK all
        frame = json.loads(await asyncio.wait_for(ws_a.recv(), 10))
        await ws_a.send(json.dumps({"id": frame["id"], "status": 200}))
        if frame["id"] == held:
            assert frame["event"]["context"][0]["resource"]["id"] == "p-67890", frame
            break
    wait_for("the label without 'paused'", lambda: label() == "ROE, Jane · MRN 67890 · 1 app")

    step("Break link from the app's submenu, then Rejoin: it gets the current context (issue 15)")
    click(service, menu, "Break link")
    while True:  # told, by a SyncError (after any replay still queued; ACK those)
        frame = json.loads(await asyncio.wait_for(ws_a.recv(), 10))
        if frame.get("event", {}).get("hub.event") == "SyncError":
            break
        await ws_a.send(json.dumps({"id": frame["id"], "status": 200}))
    assert "until it is rejoined" in json.dumps(frame), frame
    want = "ROE, Jane · MRN 67890 · 1 app · 1 paused"
    wait_for(f"label {want!r}", lambda: label() == want)
    wait_for("the app's state in the menu", lambda: "PACS viewer — Link broken by support"
             in [l for _, _, l, _ in layout(service, menu)])
    with open(f"{ART}/menu-link-broken.txt", "w") as f:
        for depth, ident, l, enabled in layout(service, menu):
            f.write(f"{'  ' * (depth - 1)}{l}{'' if enabled else '  (disabled)'}  [{ident}]\n")
    click(service, menu, "Rejoin (send it the current context)")
    while True:  # the current context again; ACK it
        frame = json.loads(await asyncio.wait_for(ws_a.recv(), 10))
        await ws_a.send(json.dumps({"id": frame["id"], "status": 200}))
        if frame["id"] == held:
            break
    wait_for("the label in sync again", lambda: label() == "ROE, Jane · MRN 67890 · 1 app")
    wait_for("'PACS viewer: link broken' notified", lambda: "PACS viewer: link broken" in notes())
    wait_for("'PACS viewer rejoined' notified", lambda: "PACS viewer rejoined" in notes())

    step("Start at login: on by default, the menu switches it and saves the setting")
    # auto-launch writes under $HOME/.config, whatever XDG_CONFIG_HOME says.
    desktop = f"{home}/.config/autostart/Lockstep.desktop"
    user_file = f"{env['XDG_CONFIG_HOME']}/lockstep/lockstep.toml"
    # start_at_login defaults to true: the entry was made at start.
    wait_for("the autostart entry", lambda: os.path.exists(desktop))
    click(service, menu, "Start at login")
    wait_for("the autostart entry removed", lambda: not os.path.exists(desktop))
    wait_for("start_at_login = false in the user file",
             lambda: "start_at_login = false" in open(user_file).read())
    click(service, menu, "Start at login")
    wait_for("the autostart entry again", lambda: os.path.exists(desktop))
    wait_for("start_at_login = true in the user file",
             lambda: "start_at_login = true" in open(user_file).read())
    assert APP in open(desktop).read() or os.path.basename(APP) in open(desktop).read()

    step("Quit from the tray menu stops the hub: apps get a 1001 close")
    click(service, menu, "Quit")
    code = await asyncio.to_thread(app.wait, DEADLINE)
    assert code == 0, code
    try:
        await asyncio.wait_for(ws_a.recv(), 10)
        raise AssertionError("socket still open")
    except websockets.ConnectionClosed as e:
        assert e.code == 1001, e
    assert not os.path.exists(disc_path), "discovery file left behind"
    # The open dashboard's size and place, for the next start.
    geometry = json.load(open(f"{env['XDG_CONFIG_HOME']}/lockstep/window.json"))
    assert geometry["width"] >= 320 and geometry["height"] >= 320, geometry
    logs = os.listdir(f"{home}/state/lockstep/logs")
    assert any(n.startswith("lockstep.") and n.endswith(".log") for n in logs), logs

    step("a taken port: stopped icon, label and a notification; Quit still works")
    with socket.socket() as blocker:
        host, port = env["LOCKSTEP_LISTEN"].rsplit(":", 1)
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        blocker.bind((host, int(port)))
        blocker.listen()
        app2 = spawn([APP], "app-port-taken.log")
        service2 = service
        while service2 == service:  # the first app may have registered more than once
            line = await asyncio.wait_for(asyncio.to_thread(watcher.stdout.readline), DEADLINE)
            _, service2, obj2 = line.split()
        wait_for("the stopped label", lambda: prop(service2, obj2, "XAyatanaLabel") == "Lockstep stopped")
        menu2 = prop(service2, obj2, "Menu")
        first = layout(service2, menu2)[0][2]
        assert first.startswith("Hub stopped: port ") and "is in use" in first, first
        wait_for("'Lockstep could not start'", lambda: "Lockstep could not start" in notes())
        service, obj = service2, obj2
        icon_state("stopped")
        click(service2, menu2, "Quit")
        assert await asyncio.to_thread(app2.wait, DEADLINE) == 0
    step("a broken system settings file: stopped, the file named, toggles managed")
    system = env["LOCKSTEP_SYSTEM_CONFIG"]
    os.makedirs(os.path.dirname(system), exist_ok=True)
    with open(system, "w") as f:
        f.write('port = "many"\n')
    app3 = spawn([APP], "app-broken-system.log")
    service3 = service
    while service3 == service:
        line = await asyncio.wait_for(asyncio.to_thread(watcher.stdout.readline), DEADLINE)
        _, service3, obj3 = line.split()
    wait_for("the stopped label", lambda: prop(service3, obj3, "XAyatanaLabel") == "Lockstep stopped")
    menu3 = prop(service3, obj3, "Menu")
    items3 = layout(service3, menu3)
    first = items3[0][2]
    assert first.startswith("Hub stopped: the system settings file is not valid") and system in first, first
    for name in ("Notifications (managed by IT)", "Start at login (managed by IT)"):
        assert any(l == name and not enabled for _, _, l, enabled in items3), items3
    wait_for("a notification naming the file", lambda: system in notes())
    with open(f"{ART}/menu-broken-system.txt", "w") as f:
        for depth, ident, l, enabled in items3:
            f.write(f"{'  ' * (depth - 1)}{l}{'' if enabled else '  (disabled)'}  [{ident}]\n")
    click(service3, menu3, "Quit")
    assert await asyncio.to_thread(app3.wait, DEADLINE) == 0
    step("all tray checks passed")


try:
    asyncio.run(main())
finally:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
