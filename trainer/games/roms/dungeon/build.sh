#!/usr/bin/env bash
# Build builtin:dungeon with SDCC's sm83 port (Debian package `sdcc`, no GBDK):
#   trainer/games/roms/dungeon/build.sh [OUT.gb]     (default: dungeon.gb next to this script)
# Intermediates go to build/ (or to a temp dir when OUT is given). The ROM is reproducible
# byte for byte: no timestamps or paths end up in it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/dungeon.gb}"
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
sdcc -msm83 --std-c11 -c -o "$build/dungeon.rel" dungeon.c
# _CODE after the header/start-up code; SDCC's own variables after the RAM contract (0xC000-0xC0FF).
sdldgb -n -m -i "$build/dungeon.ihx" \
    -b _CODE=0x0200 -b _DATA=0xC100 \
    -k "$(dirname "$(command -v sdcc)")/../share/sdcc/lib/sm83" -l sm83 \
    "$build/crt0.rel" "$build/dungeon.rel"
# -Z Game Boy image: 32 KiB, ROM only, title DUNGEON, header and global checksums.
# -yN keeps crt0's logo (identical to the one makebin would write).
makebin -Z -yN -yt 0x00 -yo 2 -ya 0 -yn DUNGEON "$build/dungeon.ihx" "$out"
echo "built $out ($(wc -c <"$out") bytes)"
