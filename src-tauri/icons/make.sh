#!/usr/bin/env bash
# Redraws the tray icons (RGBA PNGs: Tauri refuses others) with ImageMagick.
set -euo pipefail
cd "$(dirname "$0")"
convert -size 64x64 xc:none -fill '#2a7' -draw 'circle 32,32 32,4' -fill white -draw 'circle 22,32 22,24' -draw 'circle 42,32 42,24' -draw 'rectangle 22,29 42,35' PNG32:linked.png
convert -size 64x64 xc:none -fill '#889' -draw 'circle 32,32 32,4' -fill white -draw 'circle 32,32 32,22' -fill '#889' -draw 'circle 32,32 32,26' PNG32:idle.png
convert -size 64x64 xc:none -fill '#e90' -draw 'circle 32,32 32,4' -fill white -draw 'rectangle 29,14 35,38' -draw 'rectangle 29,44 35,50' PNG32:attention.png
convert -size 64x64 xc:none -fill '#c33' -draw 'circle 32,32 32,4' -fill white -draw 'rectangle 18,18 46,46' PNG32:stopped.png
convert -size 128x128 xc:none -fill '#2a7' -draw 'circle 64,64 64,8' -fill white -draw 'circle 44,64 44,48' -draw 'circle 84,64 84,48' -draw 'rectangle 44,58 84,70' PNG32:icon.png
