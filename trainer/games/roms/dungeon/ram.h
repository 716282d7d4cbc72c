/*
 * RAM contract of builtin:dungeon — FIXED WRAM addresses read by trainer/games/dungeon.py.
 * Change an address here and there together (tests/test_dungeon_adapter.py checks they agree).
 *
 *   addr    name           meaning
 *   0xC000  RAM_MAGIC0     'D' (0x44) once the game is initialised
 *   0xC001  RAM_MAGIC1     'G' (0x47)
 *   0xC002  RAM_MODE       0 = booting, 1 = playing, 2 = won (input ignored)
 *   0xC003  RAM_ROOM       current room id (0..NUM_ROOMS-1)
 *   0xC004  RAM_HERO_X     hero column inside the room, 0..19 (screen column)
 *   0xC005  RAM_HERO_Y     hero row inside the room, 0..15 (screen row = y + 2, below the HUD)
 *   0xC006  RAM_COINS      coins collected (count)
 *   0xC007  RAM_KEYS       keys held (picked up minus used)
 *   0xC008  RAM_VISITED    bit r set = room r visited (room 0 at boot)
 *   0xC009  RAM_DOORS      locked doors opened (count)
 *   0xC00A  RAM_WON        1 once the hero stepped on the goal tile
 *   0xC00B  RAM_MOVES_LO   move attempts (D-pad press edges while playing), 16-bit little endian
 *   0xC00C  RAM_MOVES_HI
 *   0xC00D  RAM_KEYS_TOTAL keys picked up (count, never decreases)
 *   0xC00E  RAM_VERSION    contract version (1)
 *   0xC00F  RAM_PAD_PREV   internal: D-pad/buttons state of the previous frame (1 = pressed)
 *   0xC010  RAM_TAKEN      2 bytes per room (little endian bitmask): item i of room r consumed,
 *                          items = 'o' coin, 'k' key, 'L' locked door, numbered in row-major order
 *
 * All of WRAM is zeroed by crt0 at power-on; the game writes the magic and mode = 1 last, when the
 * first room is on screen and input is read, so "mode == 1" means "ready for the first move".
 */
#ifndef DUNGEON_RAM_H
#define DUNGEON_RAM_H

#include <stdint.h>

#define RAM_CONTRACT_VERSION 1

#define MODE_BOOTING 0
#define MODE_PLAYING 1
#define MODE_WON 2

__at(0xC000) volatile uint8_t ram_magic0;
__at(0xC001) volatile uint8_t ram_magic1;
__at(0xC002) volatile uint8_t ram_mode;
__at(0xC003) volatile uint8_t ram_room;
__at(0xC004) volatile uint8_t ram_hero_x;
__at(0xC005) volatile uint8_t ram_hero_y;
__at(0xC006) volatile uint8_t ram_coins;
__at(0xC007) volatile uint8_t ram_keys;
__at(0xC008) volatile uint8_t ram_visited;
__at(0xC009) volatile uint8_t ram_doors;
__at(0xC00A) volatile uint8_t ram_won;
__at(0xC00B) volatile uint16_t ram_moves;
__at(0xC00D) volatile uint8_t ram_keys_total;
__at(0xC00E) volatile uint8_t ram_version;
__at(0xC00F) volatile uint8_t ram_pad_prev;
__at(0xC010) volatile uint16_t ram_taken[8];

#endif
