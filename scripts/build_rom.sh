#!/usr/bin/env bash
# Build the built-in game ROM (trainer/games/roms/dungeon/dungeon.gb) with SDCC:
#   scripts/build_rom.sh [OUT.gb]
# Needs the Debian/Ubuntu package `sdcc` (4.2: sdcc -msm83, sdasgb, sdldgb, makebin).
# (`make tools` unpacks it into .tools/sdcc when it is not installed system-wide).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/.tools/sdcc/usr/bin:$PATH"
exec "$root/trainer/games/roms/dungeon/build.sh" "$@"
