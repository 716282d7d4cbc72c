/*
 * builtin:cavern: a scrolling top-down cave for reinforcement learning (SDCC sm83, no GBDK).
 *
 * Rules. The player walks a 64x48-tile cave (3.2 x 2.7 screens) that scrolls with them. Gems
 * give +10 points (2-byte BCD score); taking the last of the NUM_GEMS gems brings them all back
 * (a new round). NUM_BATS bats fly the tunnels; touching one costs a life: the player respawns
 * at the camp, the safe spot in the middle that bats never enter, and is invulnerable for
 * INVULN_FRAMES frames. 3 lives; losing the last one is game over (the world stands still).
 *
 * Controls. Movement is tile by tile. With the player on a tile, a D-pad direction (priority
 * up, down, left, right) starts a step of one tile, STEP_FRAMES = 4 frames at 2 pixels a frame,
 * that finishes whatever the pad does meanwhile, if it was pressed this frame and not the last
 * (a press edge) or a step ended the frame before (so a held direction walks on, a tile per
 * 4 frames). Bumping a wall only turns the player. With the env's timing (button held 2 frames,
 * released 2, frame_skip 4) that is exactly one tile per env step, starting on the step's first
 * frame: after every step the player, the camera and the scroll are tile-aligned (the edge rule
 * keeps it so after the pauses below, which end on any frame). A, B, start, select do nothing.
 *
 * Bats move one pixel a frame (a tile per 8 frames, half the player's speed), always tile by
 * tile. On a tile a bat picks among the open neighbours (floor or gem; never wall or camp), not
 * turning back unless at a dead end: with a xorshift16 random byte r, open[(r >> 2) % n]; but if
 * (r & 3) != 0 and the player is outside the camp within BAT_CHASE_RANGE tiles (Manhattan),
 * the direction toward the player on the longer axis (else the shorter one) when it is open.
 * A hit is a bat closer than HIT_DIST pixels to the player on both axes.
 *
 * Frame loop (no interrupts and no `halt`: the main loop polls LY, like many commercial games;
 * the timer only measures the logic):
 *   LY == 144 (VBlank): OAM DMA from the HRAM routine, SCX/SCY, BGP, then the queued VRAM
 *                       transfers (the new tile column or row the scroll brought into view, a
 *                       taken gem, HUD digits, rows of a redraw)
 *   LY wraps to 0:      one frame of game logic: joypad, player, bats, hits, camera; then the
 *                       transfers for the next VBlank and the shadow OAM
 * PyBoy ends a tick (frame) when LY wraps from 153 to 0, so each tick runs one frame of logic
 * on that tick's joypad state and its VBlank: after a tick, RAM, scroll registers, tile maps and
 * OAM agree. The view (21 x 19 tiles of the 32 x 32 BG map around the camera) always holds the
 * world: moving the camera by a tile streams one column or row; a respawn or a new round
 * redraws the view, 2 rows a frame, with the game frozen and the background blanked (BGP = 0)
 * meanwhile (RAM_REDRAW < VIEW_ROWS). The HUD (lives, score, GAME OVER) is the window layer's
 * first row at the bottom of the screen (the env's tile observation reads the BG map only).
 *
 * Speed (raw PyBoy 2.8.1: window "null", sound_emulated=False, set_emulation_speed(0), loops of
 * env steps with random buttons as env.py presses them: 2 frames via tick(2, False), release,
 * tick(2, False); 3-second runs on an "AMD EPYC" (family 26 model 2, Zen 5, 2.6 GHz), 2 vCPUs
 * shared with other work): 12,600-19,800 frames/s per core (about 19,500 with the other core
 * idle), against 57,000-117,000 for builtin:dungeon measured alternately in the same session
 * (it halts until VBlank). The CPU never idles here, so this is close to PyBoy's ceiling for a
 * busy DMG CPU: a 3-instruction loop polling LY runs at 16,000-21,000 on the same core.
 * The frame's logic takes 29-42 TIMA ticks (7,400-10,800 cycles; LY 64-96 at its end, of 144)
 * and the VBlank work 2-7 of its 10 lines (RAM_LOGIC_* and RAM_VBLANK_LINES keep the maxima).
 *
 * Determinism: crt0 zeroes WRAM and HRAM, VRAM and OAM are written before they are shown, and
 * the only randomness is the xorshift16 seeded with RNG_SEED at boot: same inputs from power-on,
 * same RAM.
 */
#include <stdint.h>

#include "ram.h"
#include "tiles.h"
#include "world.h"

#define REG(addr) (*(volatile uint8_t *)(addr))
#define rP1 REG(0xFF00)
#define rTIMA REG(0xFF05)
#define rTAC REG(0xFF07)
#define rIF REG(0xFF0F)
#define rLCDC REG(0xFF40)
#define rSCY REG(0xFF42)
#define rSCX REG(0xFF43)
#define rLY REG(0xFF44)
#define rBGP REG(0xFF47)
#define rOBP0 REG(0xFF48)
#define rOBP1 REG(0xFF49)
#define rWY REG(0xFF4A)
#define rWX REG(0xFF4B)
#define rIE REG(0xFFFF)

/* LCD on, window map 0x9C00, window on, tile data 0x8000 (unsigned ids), BG map 0x9800,
 * 8x8 sprites on, BG on. */
#define LCDC_ON 0xF3
#define BGP_NORMAL 0xE4
#define BGP_BLANK 0x00
#define OBP_FLASH 0x50 /* OBP1: the invulnerable player, lighter */
#define BG_MAP 0x9800
#define WIN_MAP 0x9C00
#define VRAM_TILES ((volatile uint8_t *)0x8000)
#define OAM ((volatile uint8_t *)0xFE00)
#define HRAM_DMA ((volatile uint8_t *)0xFF80)

#define VIEW_COLS 21 /* tiles the screen can show: 160 / 8 + 1 partly scrolled in */
#define VIEW_ROWS 19
#define CAM_MAX_X (WORLD_W * 8 - 160)
#define CAM_MAX_Y (WORLD_H * 8 - 144)
#define PLAYER_SCREEN_X 72 /* camera = player - this, clamped: multiples of 8 at rest */
#define PLAYER_SCREEN_Y 64
#define HUD_Y 136 /* the window's top line: one tile row at the bottom */

#define STEP_FRAMES 4
#define PLAYER_SPEED 2
#define BAT_CHASE_RANGE 8
#define HIT_DIST 6
#define INVULN_FRAMES 60
#define START_LIVES 3
#define RNG_SEED 0xACE1
#define REDRAW_ROWS_PER_FRAME 2
#define MAX_GEMS 128

/* read_pad() bits, 1 = pressed */
#define PAD_RIGHT 0x01
#define PAD_LEFT 0x02
#define PAD_UP 0x04
#define PAD_DOWN 0x08

#define DIR_UP 0
#define DIR_DOWN 1
#define DIR_LEFT 2
#define DIR_RIGHT 3
#define DIR_NONE 0xFF

enum tile_id {
    T_BLANK = 0,
    T_FLOOR = 1,
    T_WALL = 2,
    T_CAMP = 3,
    T_GEM = 4,
    T_VOID = 5,
    T_PLAYER = 6,
    T_BAT = 7,
    T_DIGIT0 = 8,
    T_HEART = 18,
    T_LETTER_G = 19,
    T_LETTER_A = 20,
    T_LETTER_M = 21,
    T_LETTER_E = 22,
    T_LETTER_O = 23,
    T_LETTER_V = 24,
    T_LETTER_R = 25,
};

static const int8_t dir_dx[4] = {0, 0, -1, 1};
static const int8_t dir_dy[4] = {-1, 1, 0, 0};
static const uint8_t game_over_text[9] = {T_LETTER_G, T_LETTER_A, T_LETTER_M, T_LETTER_E, T_BLANK,
                                          T_LETTER_O, T_LETTER_V, T_LETTER_E, T_LETTER_R};
#define HUD_LEN 8
#define HUD_GAME_OVER_X 11

/* OAM DMA from the shadow OAM at 0xC000; copied to HRAM (the CPU can only read HRAM during DMA):
 * ld a, 0xC0 / ldh (0x46), a / ld a, 40 / 1: dec a / jr nz, 1 / ret */
static const uint8_t dma_code[10] = {0x3E, 0xC0, 0xE0, 0x46, 0x3E, 0x28, 0x3D, 0x20, 0xFD, 0xC9};

/* VRAM transfers queued by the frame logic, run in the next VBlank by run_xfers() (asm). */
typedef struct {
    uint16_t dst;       /* VRAM address */
    const uint8_t *src; /* tile ids */
    uint8_t count;
    uint8_t stride; /* 1 (a row) or 32 (a column) */
} xfer_t;
#define XFER_MAX 12
#define XBUF_MAX 128 /* per frame at most: 2 rows (42) or a column and a row, HUD 8, a gem */
xfer_t xfers[XFER_MAX];
uint8_t xfer_count;
static uint8_t xbuf[XBUF_MAX];
static uint8_t xbuf_len;

static uint16_t gem_cells[MAX_GEMS]; /* world index of every gem of world.h, row-major */
static uint8_t gems_total;
static uint16_t start_px, start_py;
static uint8_t start_x, start_y;
static uint8_t hud_dirty;
static uint8_t respawned;
static uint8_t restore_gems;

#define WORLD_INDEX(x, y) (((uint16_t)(y) << 6) + (x))

/* ---- VBlank ------------------------------------------------------------------------------ */

/* Copy the queued transfers to VRAM: 11 cycles a tile in a row (a stride-1 run never crosses a
 * 256-byte page: it stays in one 32-tile map row), 15 in a column. */
void run_xfers(void) __naked
{
    __asm
        push    bc
        push    de
        ld      a, (_xfer_count)
        or      a
        jr      z, 6$
        ld      hl, #_xfers
1$:
        push    af              ; transfers left
        ld      a, (hl+)
        ld      e, a
        ld      a, (hl+)
        ld      d, a            ; de = VRAM destination
        ld      a, (hl+)
        ld      c, a
        ld      a, (hl+)
        ld      b, a            ; bc = source
        ld      a, (hl+)        ; count
        push    hl              ; -> stride
        ld      h, (hl)
        ld      l, a            ; h = stride, l = count
        dec     h
        jr      nz, 3$
2$:                             ; stride 1
        ld      a, (bc)
        inc     bc
        ld      (de), a
        inc     e
        dec     l
        jr      nz, 2$
        jr      5$
3$:                             ; stride 32
        ld      a, (bc)
        inc     bc
        ld      (de), a
        ld      a, e
        add     a, #32
        ld      e, a
        jr      nc, 4$
        inc     d
4$:
        dec     l
        jr      nz, 3$
5$:
        pop     hl
        inc     hl              ; next transfer
        pop     af
        dec     a
        jr      nz, 1$
6$:
        pop     de
        pop     bc
        ret
    __endasm;
}

static void oam_dma(void) __naked
{
    __asm
        jp      0xFF80
    __endasm;
}

static void vblank(void)
{
    uint8_t lines;
    oam_dma();
    rSCX = (uint8_t)ram_camera_x;
    rSCY = (uint8_t)ram_camera_y;
    rBGP = ram_redraw < VIEW_ROWS ? BGP_BLANK : BGP_NORMAL;
    run_xfers();
    /* lines of VBlank used (LY - 144); an overrun into the next frame reads as 112 or more */
    lines = (uint8_t)(rLY - 144);
    if (lines > ram_vblank_lines)
        ram_vblank_lines = lines;
}

/* ---- transfers -------------------------------------------------------------------------- */

static uint8_t *xalloc(uint8_t n)
{
    uint8_t *p = xbuf + xbuf_len;
    xbuf_len += n;
    return p;
}

static void xfer(uint16_t dst, const uint8_t *src, uint8_t count, uint8_t stride)
{
    xfer_t *x;
    if (xfer_count >= XFER_MAX)
        return;
    x = &xfers[xfer_count++];
    x->dst = dst;
    x->src = src;
    x->count = count;
    x->stride = stride;
}

/* The tile at world (x, y); outside the world (only ever in the BG map, never on screen): void. */
static uint8_t world_tile(uint8_t x, uint8_t y)
{
    if (x >= WORLD_W || y >= WORLD_H)
        return T_VOID;
    return world[WORLD_INDEX(x, y)];
}

static uint8_t cam_tx(void)
{
    return (uint8_t)(ram_camera_x >> 3);
}

static uint8_t cam_ty(void)
{
    return (uint8_t)(ram_camera_y >> 3);
}

/* World column `col`, view rows, into the BG map (which wraps at 32 x 32). */
static void stream_column(uint8_t col)
{
    uint8_t row = cam_ty();
    uint8_t *buf = xalloc(VIEW_ROWS);
    uint8_t *dst = buf;
    const uint8_t *src = world + WORLD_INDEX(col, row);
    uint8_t inside = 0, i, first;
    if (col < WORLD_W && row < WORLD_H)
        inside = WORLD_H - row < VIEW_ROWS ? WORLD_H - row : VIEW_ROWS;
    for (i = inside; i; i--, src += WORLD_W)
        *dst++ = *src;
    for (i = VIEW_ROWS - inside; i; i--)
        *dst++ = T_VOID;
    first = 32 - (row & 31);
    if (first > VIEW_ROWS)
        first = VIEW_ROWS;
    xfer(BG_MAP + ((uint16_t)(row & 31) << 5) + (col & 31), buf, first, 32);
    if (first < VIEW_ROWS)
        xfer(BG_MAP + (col & 31), buf + first, VIEW_ROWS - first, 32);
}

/* World row `row`, view columns, into the BG map. */
static void stream_row(uint8_t row)
{
    uint8_t col = cam_tx();
    uint8_t *buf = xalloc(VIEW_COLS);
    uint8_t *dst = buf;
    const uint8_t *src = world + WORLD_INDEX(col, row);
    uint16_t base = BG_MAP + ((uint16_t)(row & 31) << 5);
    uint8_t inside = 0, i, first;
    if (row < WORLD_H && col < WORLD_W)
        inside = WORLD_W - col < VIEW_COLS ? WORLD_W - col : VIEW_COLS;
    for (i = inside; i; i--)
        *dst++ = *src++;
    for (i = VIEW_COLS - inside; i; i--)
        *dst++ = T_VOID;
    first = 32 - (col & 31);
    if (first > VIEW_COLS)
        first = VIEW_COLS;
    xfer(base + (col & 31), buf, first, 1);
    if (first < VIEW_COLS)
        xfer(base, buf + first, VIEW_COLS - first, 1);
}

static void hud_tiles(uint8_t *buf)
{
    uint8_t hi = ram_score_hi, lo = ram_score_lo;
    buf[0] = T_HEART;
    buf[1] = T_DIGIT0 + ram_lives;
    buf[2] = T_BLANK;
    buf[3] = T_GEM;
    buf[4] = T_DIGIT0 + (hi >> 4);
    buf[5] = T_DIGIT0 + (hi & 15);
    buf[6] = T_DIGIT0 + (lo >> 4);
    buf[7] = T_DIGIT0 + (lo & 15);
}

static void queue_hud(void)
{
    uint8_t *buf = xalloc(HUD_LEN);
    hud_tiles(buf);
    xfer(WIN_MAP, buf, HUD_LEN, 1);
    if (ram_mode == MODE_GAME_OVER)
        xfer(WIN_MAP + HUD_GAME_OVER_X, game_over_text, sizeof(game_over_text), 1);
}

/* ---- camera ----------------------------------------------------------------------------- */

static uint16_t cam_for(uint16_t p, uint8_t offset, uint16_t max)
{
    if (p <= offset)
        return 0;
    p -= offset;
    return p > max ? max : p;
}

/* Follow the player (it moves 2 pixels a frame, so the camera crosses at most one tile edge
 * per axis) and stream the column and row that came into view. */
static void follow_camera(void)
{
    uint8_t old_tx = cam_tx(), old_ty = cam_ty(), tx, ty;
    ram_camera_x = cam_for(ram_player_px, PLAYER_SCREEN_X, CAM_MAX_X);
    ram_camera_y = cam_for(ram_player_py, PLAYER_SCREEN_Y, CAM_MAX_Y);
    tx = cam_tx();
    ty = cam_ty();
    if (tx > old_tx)
        stream_column(tx + VIEW_COLS - 1);
    else if (tx < old_tx)
        stream_column(tx);
    if (ty > old_ty)
        stream_row(ty + VIEW_ROWS - 1);
    else if (ty < old_ty)
        stream_row(ty);
}

/* Rows of the view redrawn after a respawn or a new round; the game waits until all are. */
static void redraw_step(void)
{
    uint8_t n;
    if (restore_gems) {
        for (n = 0; n < gems_total; n++)
            world[gem_cells[n]] = T_GEM;
        restore_gems = 0;
    }
    for (n = 0; n < REDRAW_ROWS_PER_FRAME && ram_redraw < VIEW_ROWS; n++) {
        stream_row(cam_ty() + ram_redraw);
        ram_redraw++;
    }
}

/* ---- rules ------------------------------------------------------------------------------ */

static uint8_t rand8(void)
{
    uint16_t x = ram_rng;
    x ^= x << 7;
    x ^= x >> 9;
    x ^= x << 8;
    ram_rng = x;
    return (uint8_t)x;
}

/* score += 10 in BCD (little endian: lo = tens|ones, hi = thousands|hundreds), at most 9999 */
static void add_gem_score(void)
{
    uint8_t lo = ram_score_lo, hi = ram_score_hi;
    if (hi == 0x99 && lo >= 0x90) {
        lo = 0x99;
    } else {
        lo += 0x10;
        if ((lo & 0xF0) == 0xA0) {
            lo &= 0x0F;
            hi++;
            if ((hi & 0x0F) == 0x0A)
                hi += 6;
        }
    }
    ram_score_lo = lo;
    ram_score_hi = hi;
}

/* The last gem is taken: all come back (in the world at the next frame, the first of the
 * redraw, where the game logic is idle), round + 1. */
static void new_round(void)
{
    ram_gems_left = gems_total;
    ram_round++;
    ram_redraw = 0;
    restore_gems = 1;
}

/* The player finished a step on (x, y). */
static void arrive(void)
{
    uint8_t x = ram_player_x, y = ram_player_y;
    uint16_t i = WORLD_INDEX(x, y);
    uint8_t *buf;
    if (world[i] != T_GEM)
        return;
    world[i] = T_FLOOR;
    buf = xalloc(1);
    buf[0] = T_FLOOR;
    xfer(BG_MAP + ((uint16_t)(y & 31) << 5) + (x & 31), buf, 1, 1);
    add_gem_score();
    hud_dirty = 1;
    if (--ram_gems_left == 0)
        new_round();
}

static uint8_t pad_dir(uint8_t pad)
{
    if (pad & PAD_UP)
        return DIR_UP;
    if (pad & PAD_DOWN)
        return DIR_DOWN;
    if (pad & PAD_LEFT)
        return DIR_LEFT;
    if (pad & PAD_RIGHT)
        return DIR_RIGHT;
    return DIR_NONE;
}

/* `edge`: D-pad bits pressed this frame and not the previous one. */
static void update_player(uint8_t pad, uint8_t edge)
{
    uint8_t d, x, y;
    uint8_t chain = ram_player_chain;
    ram_player_chain = 0;
    if (ram_player_move == 0) {
        d = pad_dir(pad);
        if (d == DIR_NONE || !(edge || chain))
            return;
        ram_player_dir = d;
        x = ram_player_x + dir_dx[d];
        y = ram_player_y + dir_dy[d];
        if (world[WORLD_INDEX(x, y)] == T_WALL)
            return;
        ram_player_x = x;
        ram_player_y = y;
        ram_player_move = STEP_FRAMES;
    }
    switch (ram_player_dir) {
    case DIR_UP:
        ram_player_py -= PLAYER_SPEED;
        break;
    case DIR_DOWN:
        ram_player_py += PLAYER_SPEED;
        break;
    case DIR_LEFT:
        ram_player_px -= PLAYER_SPEED;
        break;
    default:
        ram_player_px += PLAYER_SPEED;
        break;
    }
    if (--ram_player_move == 0) {
        ram_player_chain = 1;
        arrive();
    }
}

static uint8_t bat_can_enter(uint8_t x, uint8_t y)
{
    uint8_t t = world[WORLD_INDEX(x, y)];
    return t == T_FLOOR || t == T_GEM;
}

static uint8_t contains(const uint8_t *list, uint8_t n, uint8_t value)
{
    uint8_t i;
    for (i = 0; i < n; i++) {
        if (list[i] == value)
            return 1;
    }
    return 0;
}

/* A bat on a tile picks its next direction (see the header comment). */
static void bat_decide(bat_t *b)
{
    uint8_t bx = (uint8_t)(b->x >> 3), by = (uint8_t)(b->y >> 3);
    uint8_t px = ram_player_x, py = ram_player_y;
    uint8_t open[4];
    uint8_t n = 0, k, d, r, adx, ady, want, alt;
    uint8_t reverse = b->dir ^ 1;

    for (d = 0; d < 4; d++) {
        if (bat_can_enter(bx + dir_dx[d], by + dir_dy[d]))
            open[n++] = d;
    }
    if (n == 0)
        return;
    if (n > 1) {
        k = 0;
        for (d = 0; d < n; d++) {
            if (open[d] != reverse)
                open[k++] = open[d];
        }
        n = k;
    }
    r = rand8();
    d = open[(uint8_t)(r >> 2) % n];
    adx = px > bx ? px - bx : bx - px;
    ady = py > by ? py - by : by - py;
    if ((r & 3) && adx + ady <= BAT_CHASE_RANGE && (adx | ady) &&
        world[WORLD_INDEX(px, py)] != T_CAMP) {
        if (adx >= ady) {
            want = px > bx ? DIR_RIGHT : DIR_LEFT;
            alt = ady ? (py > by ? DIR_DOWN : DIR_UP) : DIR_NONE;
        } else {
            want = py > by ? DIR_DOWN : DIR_UP;
            alt = adx ? (px > bx ? DIR_RIGHT : DIR_LEFT) : DIR_NONE;
        }
        if (contains(open, n, want))
            d = want;
        else if (contains(open, n, alt))
            d = alt;
    }
    b->dir = d;
    b->steps = 8;
}

static void update_bats(void)
{
    bat_t *b = ram_bats;
    uint16_t *p;
    uint8_t i;
    for (i = 0; i < NUM_BATS; i++, b++) {
        if (b->delay) {
            b->delay--;
            continue;
        }
        if (b->steps == 0) {
            bat_decide(b);
            if (b->steps == 0)
                continue;
        }
        b->steps--;
        p = (b->dir & 2) ? &b->x : &b->y; /* up/down move y, left/right x */
        if (b->dir & 1)                   /* down, right */
            (*p)++;
        else
            (*p)--;
    }
}

/* |a - b| < HIT_DIST */
static uint8_t near(uint16_t a, uint16_t b)
{
    return (uint16_t)(a - b + (HIT_DIST - 1)) < 2 * HIT_DIST - 1;
}

static void lose_life(void)
{
    ram_lives--;
    ram_deaths++;
    hud_dirty = 1;
    if (ram_lives == 0) {
        ram_mode = MODE_GAME_OVER;
        return;
    }
    ram_player_x = start_x;
    ram_player_y = start_y;
    ram_player_px = start_px;
    ram_player_py = start_py;
    ram_player_move = 0;
    ram_player_chain = 0;
    ram_invuln = INVULN_FRAMES;
    ram_camera_x = cam_for(start_px, PLAYER_SCREEN_X, CAM_MAX_X);
    ram_camera_y = cam_for(start_py, PLAYER_SCREEN_Y, CAM_MAX_Y);
    ram_redraw = 0;
    respawned = 1;
}

static void check_hits(void)
{
    uint16_t px = ram_player_px, py = ram_player_py;
    bat_t *b = ram_bats;
    uint8_t i;
    for (i = 0; i < NUM_BATS; i++, b++) {
        if (near(b->x, px) && near(b->y, py)) {
            lose_life();
            return;
        }
    }
}

/* ---- sprites ---------------------------------------------------------------------------- */

static uint16_t oam_cam_x, oam_cam_y;

static void put_sprite(uint8_t *s, uint16_t wx, uint16_t wy, uint8_t tile, uint8_t attr)
{
    uint16_t sx = wx - oam_cam_x + 8;  /* OAM x: screen x + 8 */
    uint16_t sy = wy - oam_cam_y + 16; /* OAM y: screen y + 16 */
    if (sx == 0 || sx >= 168 || sy == 0 || sy >= 160) {
        s[0] = 0; /* off screen: hidden */
        s[1] = 0;
    } else {
        s[0] = (uint8_t)sy;
        s[1] = (uint8_t)sx;
    }
    s[2] = tile;
    s[3] = attr;
}

static void build_oam(void)
{
    uint8_t *s = shadow_oam;
    uint8_t attr = ram_player_dir == DIR_LEFT ? 0x20 : 0;
    uint8_t frame_lo = (uint8_t)ram_frame;
    bat_t *b = ram_bats;
    uint8_t i;
    oam_cam_x = ram_camera_x;
    oam_cam_y = ram_camera_y;
    if (ram_invuln && (frame_lo & 4))
        attr |= 0x10; /* OBP1 */
    put_sprite(s, ram_player_px, ram_player_py, T_PLAYER, attr);
    attr = (frame_lo & 8) ? 0x20 : 0; /* wings: X flip every 8 frames */
    for (i = 0; i < NUM_BATS; i++, b++) {
        s += 4;
        put_sprite(s, b->x, b->y, T_BAT, attr);
    }
}

/* ---- frame ------------------------------------------------------------------------------ */

/* Joypad: D-pad in the low nibble, buttons in the high nibble, 1 = pressed. */
static uint8_t read_pad(void)
{
    uint8_t dpad, buttons;
    rP1 = 0x20; /* select the D-pad */
    dpad = rP1;
    dpad = rP1;
    dpad = rP1;
    rP1 = 0x10; /* select the buttons */
    buttons = rP1;
    buttons = rP1;
    buttons = rP1;
    rP1 = 0x30;
    return (uint8_t)((~dpad & 0x0F) | ((~buttons & 0x0F) << 4));
}

static void frame(void)
{
    uint8_t pad, edge, ly, t0 = rTIMA;
    xfer_count = 0;
    xbuf_len = 0;
    respawned = 0;
    ram_frame++;
    pad = read_pad();
    edge = pad & (uint8_t)~ram_pad_prev & 0x0F;
    ram_pad = pad;
    ram_pad_prev = pad;
    if (ram_mode == MODE_PLAYING) {
        if (ram_redraw < VIEW_ROWS) {
            ram_player_chain = 0; /* after the wait, a step needs a new press */
            redraw_step();
        } else {
            update_player(pad, edge);
            update_bats();
            if (ram_invuln)
                ram_invuln--;
            else
                check_hits();
            if (!respawned)
                follow_camera();
        }
    }
    if (hud_dirty) {
        queue_hud();
        hud_dirty = 0;
    }
    build_oam();
    ly = rLY;
    if (ly > ram_logic_ly)
        ram_logic_ly = ly;
    t0 = rTIMA - t0;
    if (t0 > ram_logic_time)
        ram_logic_time = t0;
}

/* ---- boot ------------------------------------------------------------------------------- */

static void load_tiles(void)
{
    volatile uint8_t *dst = VRAM_TILES;
    const char *src;
    uint8_t t, row, col, lo, hi, v;
    for (t = 0; t < NUM_TILES; t++) {
        src = tile_art[t];
        for (row = 0; row < 8; row++) {
            lo = 0;
            hi = 0;
            for (col = 0; col < 8; col++) {
                v = (uint8_t)(*src++ - '0');
                lo = (uint8_t)((lo << 1) | (v & 1));
                hi = (uint8_t)((hi << 1) | (v >> 1));
            }
            *dst++ = lo;
            *dst++ = hi;
        }
    }
}

/* world.h -> world[] (tile ids), the gem list, the player's start, the bats. */
static void build_world(void)
{
    uint16_t i;
    uint8_t t, bats = 0;
    for (i = 0; i < WORLD_W * WORLD_H; i++) {
        switch (world_map[i]) {
        case '#':
            t = T_WALL;
            break;
        case '*':
            t = T_GEM;
            if (gems_total < MAX_GEMS)
                gem_cells[gems_total++] = i;
            break;
        case ',':
            t = T_CAMP;
            break;
        case '@':
            t = T_CAMP;
            start_x = (uint8_t)(i & 63);
            start_y = (uint8_t)(i >> 6);
            break;
        case 'B':
            t = T_FLOOR;
            if (bats < NUM_BATS) {
                ram_bats[bats].x = (i & 63) << 3;
                ram_bats[bats].y = (i >> 6) << 3;
                ram_bats[bats].delay = bats; /* one decision per frame: 8 bats, 8 frames a tile */
                bats++;
            }
            break;
        default:
            t = T_FLOOR;
            break;
        }
        world[i] = t;
    }
    start_px = (uint16_t)start_x << 3;
    start_py = (uint16_t)start_y << 3;
}

/* The whole view straight into the BG map, and the HUD into the window map (LCD off). */
static void draw_screen(void)
{
    uint8_t r, c, x, y = cam_ty();
    uint8_t hud[HUD_LEN];
    volatile uint8_t *row;
    for (r = 0; r < VIEW_ROWS; r++, y++) {
        row = (volatile uint8_t *)(BG_MAP + ((uint16_t)(y & 31) << 5));
        x = cam_tx();
        for (c = 0; c < VIEW_COLS; c++, x++)
            row[x & 31] = world_tile(x, y);
    }
    hud_tiles(hud);
    for (c = 0; c < HUD_LEN; c++)
        ((volatile uint8_t *)WIN_MAP)[c] = hud[c];
}

void main(void)
{
    uint16_t i;
    uint8_t j;

    /* The LCD may only be switched off in VBlank. */
    if (rLCDC & 0x80) {
        while (rLY != 144)
            ;
        rLCDC = 0;
    }
    load_tiles();
    for (i = 0; i < 0x400; i++) {
        ((volatile uint8_t *)BG_MAP)[i] = T_VOID;
        ((volatile uint8_t *)WIN_MAP)[i] = T_BLANK;
    }
    for (j = 0; j < sizeof(dma_code); j++)
        HRAM_DMA[j] = dma_code[j];

    ram_version = RAM_CONTRACT_VERSION;
    ram_lives = START_LIVES;
    ram_rng = RNG_SEED;
    ram_redraw = VIEW_ROWS;
    ram_player_dir = DIR_DOWN;
    build_world();
    ram_gems_left = gems_total;
    ram_player_x = start_x;
    ram_player_y = start_y;
    ram_player_px = start_px;
    ram_player_py = start_py;
    ram_camera_x = cam_for(start_px, PLAYER_SCREEN_X, CAM_MAX_X);
    ram_camera_y = cam_for(start_py, PLAYER_SCREEN_Y, CAM_MAX_Y);
    draw_screen();
    build_oam();
    for (j = 0; j < 160; j++)
        OAM[j] = shadow_oam[j];

    rBGP = BGP_NORMAL;
    rOBP0 = BGP_NORMAL;
    rOBP1 = OBP_FLASH;
    rSCX = (uint8_t)ram_camera_x;
    rSCY = (uint8_t)ram_camera_y;
    rWX = 7;
    rWY = HUD_Y;
    rTAC = 0x04; /* timer on, 4096 Hz: TIMA counts 256 CPU cycles; measures the logic (no IRQ) */
    rIE = 0; /* no interrupts: the loop below polls LY */
    rIF = 0;
    rLCDC = LCDC_ON;
    ram_magic[0] = 'C';
    ram_magic[1] = 'A';
    ram_magic[2] = 'V';
    ram_magic[3] = 'E';
    ram_mode = MODE_PLAYING;

    for (;;) {
        while (rLY != 144)
            ;
        vblank();
        while (rLY >= 144)
            ;
        frame();
    }
}
