#!/bin/sh
# Starts Wine for the Windows leg with every standard stream detached, so that wineserver
# and Wine's services (which outlive this script) never hold ctest's pipes open; stops it
# after the last test. WINEPREFIX comes from the test's environment.
set -e
case "$1" in
start)
  mkdir -p "$WINEPREFIX"
  # A persistent server first (it would otherwise exit 3 s after each test), then the
  # prefix itself; wineserver refuses a second instance, which is fine.
  wineserver -p >/dev/null 2>&1 </dev/null || true
  wine wineboot >/dev/null 2>&1 </dev/null
  # No X display here: Wine's null graphics driver lets the desktop process start, where the
  # default driver fails and prints errors into the output of whichever test loads user32.
  wine reg add 'HKCU\Software\Wine\Drivers' /v Graphics /d null /f >/dev/null 2>&1 </dev/null
  # A trivial program proves the prefix runs executables before any test relies on it.
  wine cmd /c exit 0 >/dev/null 2>&1 </dev/null
  echo "wine prefix ready: $WINEPREFIX"
  ;;
stop)
  wineserver -k >/dev/null 2>&1 </dev/null || true
  echo "wine stopped"
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
