/*
 * RAM contract of builtin:cavern: FIXED addresses, meant to be read through the declarative
 * `adapter: ram` (rewards declared as RAM addresses in the job spec; cavern has no Python adapter).
 * tests/test_cavern_rom.py parses the `__at(...)` lines below and checks every field against its
 * reference model, so this table, the declarations and the test agree.
 *
 * Reward and done terms a job spec would declare:
 *   ready    : bytes 0xD000-0xD003 == "CAVE" and byte 0xD005 == 1 (playing)
 *   score    : 2-byte BCD, little endian, at 0xD010 (0xD010 = tens|ones, 0xD011 = thousands|
 *              hundreds); reward the decoded increase (+10 per gem: scale 0.1 for +1 per gem)
 *   lives    : byte 0xD012; penalise a decrease (-1 per life lost)
 *   explore  : the tuple (0xD020, 0xD021) = player tile (x, y); reward each tuple seen the first
 *              time in an episode (at most 64 x 48 distinct values; ~2,000 are floor)
 *   done     : byte 0xD005 == 2 (game over)
 *
 *   addr   width encoding   name             meaning
 *   0xD000 4     ASCII      RAM_MAGIC        "CAVE" (43 41 56 45) once the game is initialised
 *   0xD004 1     uint8      RAM_VERSION      contract version: 1
 *   0xD005 1     enum       RAM_MODE         0 = booting, 1 = playing, 2 = game over
 *                                            (input then ignored, the world stands still)
 *   0xD006 2     uint16 LE  RAM_FRAME        frames run since play began (wraps)
 *   0xD010 2     BCD, LE    RAM_SCORE        score 0000-9999: 0xD010 = tens (high nibble) and
 *                                            ones (low), 0xD011 = thousands and hundreds;
 *                                            +10 per gem, stays at 9999 once there
 *   0xD012 1     uint8      RAM_LIVES        3 at start, -1 per bat hit; 0 = game over
 *   0xD013 1     uint8      RAM_DEATHS       lives lost so far
 *   0xD014 1     uint8      RAM_GEMS_LEFT    gems left in this round (NUM_GEMS at start;
 *                                            taking the last one brings all back, round + 1)
 *   0xD015 1     uint8      RAM_ROUND        rounds cleared (all gems taken)
 *   0xD016 1     uint8      RAM_INVULN       frames of invulnerability left after a respawn
 *   0xD020 1     uint8      RAM_PLAYER_X     player tile column in the world, 0..63
 *   0xD021 1     uint8      RAM_PLAYER_Y     player tile row in the world, 0..47
 *                                            (while a step is under way: its target tile)
 *   0xD022 2     uint16 LE  RAM_PLAYER_PX    player pixel x in the world (8 * tile x at rest)
 *   0xD024 2     uint16 LE  RAM_PLAYER_PY    player pixel y in the world (8 * tile y at rest)
 *   0xD026 1     enum       RAM_PLAYER_DIR   facing: 0 up, 1 down, 2 left, 3 right
 *   0xD027 1     uint8      RAM_PLAYER_MOVE  frames left of the current step (0 = at rest)
 *   0xD028 1     bool       RAM_PLAYER_CHAIN 1 = a step ended last frame (a held D-pad
 *                                            walks on without a new press)
 *   0xD029 1     bits       RAM_PAD          joypad this frame, 1 = pressed: bit 0 right,
 *                                            1 left, 2 up, 3 down, 4 A, 5 B, 6 select, 7 start
 *   0xD02A 1     bits       RAM_PAD_PREV     joypad of the previous frame (= RAM_PAD after
 *                                            the frame; kept apart for the press edge)
 *   0xD02B 1     uint8      RAM_REDRAW       view rows redrawn after a respawn or a new round;
 *                                            VIEW_ROWS (19) = done, below it the game waits
 *   0xD02C 2     uint16 LE  RAM_CAMERA_X     view left edge in world pixels (SCX = low byte)
 *   0xD02E 2     uint16 LE  RAM_CAMERA_Y     view top edge in world pixels (SCY = low byte)
 *   0xD030 2     uint16 LE  RAM_RNG          xorshift16 state (seeded 0xACE1 at boot)
 *   0xD032 1     uint8      RAM_VBLANK_LINES most VBlank lines used by the VRAM work so far
 *                                            (LY - 144 at its end; 0..9 = inside VBlank)
 *   0xD033 1     uint8      RAM_LOGIC_LY     largest LY at the end of a frame's logic so far
 *                                            (below 144: the logic fits before VBlank)
 *   0xD034 1     uint8      RAM_LOGIC_TIME   longest frame logic so far, in TIMA ticks of 256
 *                                            CPU cycles (a frame is 68.6)
 *   0xD040 8 x 8 struct     RAM_BATS         bat i at 0xD040 + 8i: x (uint16 LE, world pixel),
 *                                            y (uint16 LE), dir (0 up 1 down 2 left 3 right),
 *                                            steps (pixels left to the next tile), delay
 *                                            (frames before its first move: i), 1 unused
 *
 * Internal, stable for debugging (not part of the reward contract):
 *   0xC000 160   bytes      shadow OAM, copied to 0xFE00 by OAM DMA every VBlank
 *                              (sprite 0 = player, 1..8 = bats; y = 0: hidden)
 *   0xC100 3072  tile ids   the world as it is now, row-major 64 x 48 (gems taken = floor)
 *   0xFF80 10    code       the OAM DMA routine (runs from HRAM)
 *
 * All of WRAM and HRAM is zeroed by crt0 at power-on. The game writes the magic and mode = 1 last,
 * when the first view is on screen, so "mode == 1" means "ready for the first input". From then on
 * every PyBoy frame (tick) runs exactly one frame of game logic, from LY 0, on the joypad state of
 * that tick, and writes its VRAM/OAM changes in the VBlank at the end of the same tick: after a
 * tick, RAM, the scroll registers, the tile maps and OAM all describe the same moment.
 */
#ifndef CAVERN_RAM_H
#define CAVERN_RAM_H

#include <stdint.h>

#define RAM_CONTRACT_VERSION 1

#define MODE_BOOTING 0
#define MODE_PLAYING 1
#define MODE_GAME_OVER 2

#define NUM_BATS 8

typedef struct {
    uint16_t x;    /* world pixel x (8 * tile x when steps == 0) */
    uint16_t y;    /* world pixel y */
    uint8_t dir;   /* 0 up, 1 down, 2 left, 3 right */
    uint8_t steps; /* pixels left to the next tile (0 = on a tile: choose a direction) */
    uint8_t delay; /* frames to wait before the first move (bat i: i), so they decide in turn */
    uint8_t unused;
} bat_t;

__at(0xD000) volatile uint8_t ram_magic[4];
__at(0xD004) volatile uint8_t ram_version;
__at(0xD005) volatile uint8_t ram_mode;
__at(0xD006) volatile uint16_t ram_frame;
__at(0xD010) volatile uint8_t ram_score_lo;
__at(0xD011) volatile uint8_t ram_score_hi;
__at(0xD012) volatile uint8_t ram_lives;
__at(0xD013) volatile uint8_t ram_deaths;
__at(0xD014) volatile uint8_t ram_gems_left;
__at(0xD015) volatile uint8_t ram_round;
__at(0xD016) volatile uint8_t ram_invuln;
__at(0xD020) volatile uint8_t ram_player_x;
__at(0xD021) volatile uint8_t ram_player_y;
__at(0xD022) volatile uint16_t ram_player_px;
__at(0xD024) volatile uint16_t ram_player_py;
__at(0xD026) volatile uint8_t ram_player_dir;
__at(0xD027) volatile uint8_t ram_player_move;
__at(0xD028) volatile uint8_t ram_player_chain;
__at(0xD029) volatile uint8_t ram_pad;
__at(0xD02A) volatile uint8_t ram_pad_prev;
__at(0xD02B) volatile uint8_t ram_redraw;
__at(0xD02C) volatile uint16_t ram_camera_x;
__at(0xD02E) volatile uint16_t ram_camera_y;
__at(0xD030) volatile uint16_t ram_rng;
__at(0xD032) volatile uint8_t ram_vblank_lines;
__at(0xD033) volatile uint8_t ram_logic_ly;
__at(0xD034) volatile uint8_t ram_logic_time;
__at(0xD040) bat_t ram_bats[NUM_BATS];

__at(0xC000) uint8_t shadow_oam[160];
__at(0xC100) uint8_t world[3072];

#endif
