#!/usr/bin/env bash
# Redraws the bundle icons (every size the .deb, MSI and DMG ask for) from one
# 1024 px source drawn here: the tray's "linked" mark (src-tauri/icons/make.sh)
# at full size. Needs ImageMagick (`convert`) and icnsutils (`png2icns`).
# The results are committed; rerun this only when the design changes.
set -euo pipefail
cd "$(dirname "$0")"
# Debian's ImageMagick, not a stand-in earlier on the PATH.
CONVERT=/usr/bin/convert
[ -x "$CONVERT" ] || CONVERT=convert

"$CONVERT" -size 1024x1024 xc:none -fill '#2a7' -draw 'circle 512,512 512,64' \
  -fill white -draw 'circle 352,512 352,384' -draw 'circle 672,512 672,384' \
  -draw 'rectangle 352,464 672,560' PNG32:source-1024.png

png() { "$CONVERT" source-1024.png -resize "$1x$1" -strip PNG32:"$2"; }
png 32 32x32.png
png 128 128x128.png
png 256 128x128@2x.png
png 512 icon.png

# Windows: one .ico holding the sizes Explorer and the taskbar pick from.
"$CONVERT" source-1024.png -define icon:auto-resize=256,64,48,32,24,16 icon.ico

# macOS: png2icns picks the icns slot from each PNG's size.
tmp=$(mktemp -d)
for s in 16 32 48 128 256 512 1024; do png "$s" "$tmp/$s.png"; done
png2icns icon.icns "$tmp"/{16,32,48,128,256,512,1024}.png >/dev/null
rm -rf "$tmp"
rm -f source-1024.png
