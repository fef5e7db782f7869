#!/usr/bin/env bash
# Debian packages the project needs beside Python's: `run` for the services (reporting renders
# PDFs with WeasyPrint/Pango in fonts that cover Vietnamese), `test` adds what the tests use
# (poppler's pdftotext/pdftoppm, Chromium for the notifications page). Installs only what is
# missing, and only where it can (root with apt-get); otherwise says what to install.
set -uo pipefail
packages=(libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core fonts-liberation2)
if [ "${1:-run}" = "test" ]; then
  packages+=(poppler-utils chromium)
fi
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
    || echo "Could not install ${missing[*]}: reports (and their tests) will fail without them"
else
  echo "Please install: ${missing[*]} (Debian packages; reporting needs them for its PDFs)"
fi
exit 0
