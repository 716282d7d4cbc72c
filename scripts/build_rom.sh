#!/usr/bin/env bash
# Build the built-in game ROM (trainer/games/roms/dungeon/dungeon.gb) with SDCC:
#   scripts/build_rom.sh [OUT.gb]
# Needs the Debian/Ubuntu package `sdcc` (4.2: sdcc -msm83, sdasgb, sdldgb, makebin).
set -euo pipefail
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/trainer/games/roms/dungeon/build.sh" "$@"
