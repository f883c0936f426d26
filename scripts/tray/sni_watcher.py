#!/usr/bin/env python3
"""A minimal org.kde.StatusNotifierWatcher for the tray end-to-end test.

libayatana-appindicator only exports its tray item over D-Bus when a
watcher owns this name, and Debian ships none outside a desktop session.
Prints "registered SERVICE PATH" on stdout for each item, so the test can
wait on that line instead of sleeping.
"""
import sys

from gi.repository import Gio, GLib

XML = """
<node>
  <interface name="org.kde.StatusNotifierWatcher">
    <method name="RegisterStatusNotifierItem"><arg type="s" direction="in"/></method>
    <method name="RegisterStatusNotifierHost"><arg type="s" direction="in"/></method>
    <property name="RegisteredStatusNotifierItems" type="as" access="read"/>
    <property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
    <property name="ProtocolVersion" type="i" access="read"/>
    <signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
  </interface>
</node>
"""

items = []


def on_call(conn, sender, path, iface, method, params, invocation):
    if method == "RegisterStatusNotifierItem":
        (arg,) = params.unpack()
        # Ayatana passes an object path; others pass a bus name.
        service, obj = (sender, arg) if arg.startswith("/") else (arg, "/StatusNotifierItem")
        items.append(f"{service}{obj}")
        conn.emit_signal(None, path, iface, "StatusNotifierItemRegistered",
                         GLib.Variant("(s)", (items[-1],)))
        print(f"registered {service} {obj}", flush=True)
    invocation.return_value(None)


def on_get(conn, sender, path, iface, prop):
    return {
        "RegisteredStatusNotifierItems": GLib.Variant("as", items),
        "IsStatusNotifierHostRegistered": GLib.Variant("b", True),
        "ProtocolVersion": GLib.Variant("i", 0),
    }[prop]


def on_bus(conn, name):
    info = Gio.DBusNodeInfo.new_for_xml(XML).interfaces[0]
    conn.register_object("/StatusNotifierWatcher", info, on_call, on_get, None)


def on_name(conn, name):
    print("watcher ready", flush=True)


def on_lost(conn, name):
    print("watcher: could not own the name", file=sys.stderr, flush=True)
    sys.exit(1)


Gio.bus_own_name(Gio.BusType.SESSION, "org.kde.StatusNotifierWatcher",
                 Gio.BusNameOwnerFlags.NONE, on_bus, on_name, on_lost)
GLib.MainLoop().run()
