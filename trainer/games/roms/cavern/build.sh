#!/usr/bin/env bash
# Build builtin:cavern with SDCC's sm83 port (Debian package `sdcc`, no GBDK):
#   trainer/games/roms/cavern/build.sh [OUT.gb]     (default: cavern.gb next to this script)
# Intermediates go to build/ (or to a temp dir when OUT is given). The ROM is reproducible
# byte for byte: no timestamps or paths end up in it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/cavern.gb}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

for tool in sdcc sdasgb sdldgb makebin; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool not found: apt-get install sdcc" >&2; exit 1; }
done

if [[ $# -ge 1 ]]; then
    build="$(mktemp -d)"
    trap 'rm -rf "$build"' EXIT
else
    build="$here/build"
    mkdir -p "$build"
fi

cd "$here"
sdasgb -plosgff -o "$build/crt0.rel" crt0.s
sdcc -msm83 --std-c11 -c -o "$build/cavern.rel" cavern.c
# _CODE after the header/start-up code; SDCC's own variables after the RAM contract (0xD000-0xD0FF);
# 0xC000-0xCCFF holds the shadow OAM and the world (ram.h), the stack grows down from 0xDFFF.
sdldgb -n -m -i "$build/cavern.ihx" \
    -b _CODE=0x0200 -b _DATA=0xD100 \
    -k "$(dirname "$(command -v sdcc)")/../share/sdcc/lib/sm83" -l sm83 \
    "$build/crt0.rel" "$build/cavern.rel"
# -Z Game Boy image: 32 KiB, ROM only, title CAVERN, header and global checksums.
# -yN keeps crt0's logo (identical to the one makebin would write).
makebin -Z -yN -yt 0x00 -yo 2 -ya 0 -yn CAVERN "$build/cavern.ihx" "$out"
echo "built $out ($(wc -c <"$out") bytes)"
