#!/bin/sh
# Removes Lockstep from a Mac (run as root, e.g. a Jamf policy script).
# Keeps the managed configuration (/Library/Application Support/Lockstep)
# and each user's data (~/Library/Application Support/org.lockstep.tray,
# the login keychain) unless --purge is given (which drops only the
# managed configuration: users' own data is theirs).
set -e
rm -f /Library/LaunchAgents/org.lockstep.tray.plist
# The LaunchAgent has no KeepAlive, so a quit app stays quit.
pkill -x lockstep 2>/dev/null || true
rm -rf /Applications/Lockstep.app
pkgutil --forget org.lockstep.tray >/dev/null 2>&1 || true
if [ "${1:-}" = "--purge" ]; then
  rm -rf "/Library/Application Support/Lockstep"
fi
