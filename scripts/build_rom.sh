#!/usr/bin/env bash
# Build the built-in games' ROMs (trainer/games/roms/<game>/<game>.gb) with SDCC:
#   scripts/build_rom.sh                      both games, each ROM next to its sources
#   scripts/build_rom.sh dungeon|cavern [OUT.gb]
# Needs the Debian/Ubuntu package `sdcc` (4.2: sdcc -msm83, sdasgb, sdldgb, makebin).
# (`make tools` unpacks it into .tools/sdcc when it is not installed system-wide).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/.tools/sdcc/usr/bin:$PATH"
case "${1:-}" in
    "") for game in dungeon cavern; do "$root/trainer/games/roms/$game/build.sh"; done ;;
    dungeon | cavern) game="$1"; shift; exec "$root/trainer/games/roms/$game/build.sh" "$@" ;;
    *) echo "usage: scripts/build_rom.sh [dungeon|cavern [OUT.gb]]" >&2; exit 2 ;;
esac
