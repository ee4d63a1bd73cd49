#!/usr/bin/env bash
# Screenshots of the built documentation site, taken by headless Chromium, to look at before a
# release: the home page, the API reference and a guide page (a full-height PNG each).
#   scripts/screenshots.sh [OUT_DIR]      default .runs/screenshots (git ignores .runs/)
# Builds the site in strict mode into a temporary folder (scripts/docs.sh), then opens each page
# from the file system: no server, no network. Installs Debian's chromium first when it is
# missing (apt-get needs root: sudo when not root). Each Chromium run has a fresh profile folder,
# removed afterwards, and a time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.runs/screenshots}
PAGES=("index.html:home" "api/index.html:api" "policies/index.html:policies")
WIDTH=1280
HEIGHT=2400  # tall enough for the first screens of a long page
LIMIT=60     # seconds for one screenshot

chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "screenshots: installing Debian's chromium (apt-get, as root${SUDO:+ through sudo})" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium \
        >/dev/null
    chromium=$(command -v chromium)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/safeclients-shots.XXXXXX")
trap 'rm -rf "$work"' EXIT
bash scripts/docs.sh "$work/site" >/dev/null
mkdir -p "$out"
for entry in "${PAGES[@]}"; do
    page=${entry%%:*}
    name=${entry##*:}
    [ -f "$work/site/$page" ] || { echo "screenshots: the site has no $page" >&2; exit 1; }
    profile=$(mktemp -d "$work/profile.XXXXXX")
    # --no-sandbox: Chromium's sandbox refuses to run as root. The other flags keep it offline
    # and quiet: no first-run page, no background updates or sync.
    timeout "$LIMIT" "$chromium" --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --hide-scrollbars --user-data-dir="$profile" --window-size="$WIDTH,$HEIGHT" \
        --screenshot="$(realpath "$out")/$name.png" "file://$work/site/$page" \
        >"$work/chromium-$name.log" 2>&1 || {
            echo "screenshots: chromium failed on $page:" >&2
            tail -n 20 "$work/chromium-$name.log" >&2
            exit 1
        }
    [ -s "$out/$name.png" ] || { echo "screenshots: no image for $page" >&2; exit 1; }
    echo "screenshots: $page -> $out/$name.png"
done
