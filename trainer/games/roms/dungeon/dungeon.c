/*
 * builtin:dungeon — a small top-down dungeon for reinforcement learning (SDCC sm83, no GBDK).
 *
 * Everything is a background tile (no sprites), so the state shows both in pixels and in
 * PyBoy's game_area(). One move per D-pad *press edge* (pressed this frame, not the previous
 * one); a bump into a wall is a move attempt that changes nothing but the move counter.
 * No RNG: the game is a pure function of the inputs.
 *
 * Frame loop: halt until VBlank -> write the queued tile changes (or redraw the whole screen
 * with the LCD off after a room change) -> read the joypad -> update the RAM contract and
 * queue the tiles to change at the next VBlank.
 *
 * Timing under PyBoy (the env: press 2 frames, release 2): the move happens in the VBlank of
 * the step's first frame, its tiles are written in the next VBlank; a room change switches the
 * LCD off in that next VBlank, copies the prepared room (room_tiles[]) and switches it on again,
 * so the new room is on screen (and in game_area) from the step's third frame on. A step needs
 * a release frame: holding a button through consecutive steps is a single press edge.
 */
#include <stdint.h>

#include "ram.h"
#include "rooms.h"
#include "tiles.h"

#define REG(addr) (*(volatile uint8_t *)(addr))
#define rP1 REG(0xFF00)
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

#define LCDC_ON 0x91 /* LCD on, BG tile data at 0x8000 (unsigned ids), BG map 0x9800, BG on */
#define IE_VBLANK 0x01
#define BG_MAP ((volatile uint8_t *)0x9800)
#define VRAM_TILES ((volatile uint8_t *)0x8000)
#define OAM ((volatile uint8_t *)0xFE00)
#define HUD_ROWS 2
#define SCREEN_W 20

/* D-pad bits of read_pad() (1 = pressed); buttons are in the high nibble and do nothing. */
#define PAD_RIGHT 0x01
#define PAD_LEFT 0x02
#define PAD_UP 0x04
#define PAD_DOWN 0x08

enum tile_id {
    T_BLANK = 0,
    T_FLOOR = 1,
    T_WALL = 2,
    T_DOOR = 3,
    T_LOCKED = 4,
    T_COIN = 5,
    T_KEY = 6,
    T_GOAL = 7,
    T_HERO = 8,
    T_HUDLINE = 9,
    T_DIGIT0 = 10,
    T_LETTER_C = 20,
    T_LETTER_K = 21,
    T_LETTER_R = 22,
    T_LETTER_W = 23,
    T_LETTER_I = 24,
    T_LETTER_N = 25,
};

/* HUD row 0: " Cnn Kn Rn   WIN    " */
#define HUD_COINS_X 2
#define HUD_KEYS_X 6
#define HUD_ROOM_X 9
#define HUD_WIN_X 12

#define QUEUE_MAX 12

#define MAX_ITEMS 16 /* per room: ram_taken[] has 16 bits */

static uint8_t room_tiles[NUM_ROOMS][ROOM_W * ROOM_H]; /* every room as it is now, no hero */
static uint8_t *cur;                                   /* room_tiles[ram_room] */
static uint8_t item_count[NUM_ROOMS];
static uint16_t item_cell[NUM_ROOMS][MAX_ITEMS]; /* cell of item i of each room */
static uint8_t q_len;
static uint16_t q_pos[QUEUE_MAX]; /* offset in the BG map */
static uint8_t q_tile[QUEUE_MAX];
static uint8_t redraw_room;

static void wait_vblank(void)
{
    __asm__("halt\n\tnop");
}

static void queue(uint16_t pos, uint8_t tile)
{
    if (q_len < QUEUE_MAX) {
        q_pos[q_len] = pos;
        q_tile[q_len] = tile;
        q_len++;
    }
}

static uint16_t cell_pos(uint8_t x, uint8_t y)
{
    return ((uint16_t)(y + HUD_ROWS) << 5) + x;
}

static uint16_t cell_index(uint8_t x, uint8_t y)
{
    return (uint16_t)y * ROOM_W + x;
}

/* Map character -> tile (items as not yet taken); anything else is floor. */
static uint8_t char_tile(char ch)
{
    switch (ch) {
    case '#':
        return T_WALL;
    case 'D':
        return T_DOOR;
    case 'G':
        return T_GOAL;
    case 'o':
        return T_COIN;
    case 'k':
        return T_KEY;
    case 'L':
        return T_LOCKED;
    default:
        return T_FLOOR;
    }
}

/* Bit of the item at cell `index` of ram_room in ram_taken[ram_room]. */
static uint16_t item_bit(uint16_t index)
{
    const uint16_t *cells = item_cell[ram_room];
    uint8_t n = item_count[ram_room];
    uint16_t bit = 1;
    uint8_t i;
    for (i = 0; i < n; i++) {
        if (cells[i] == index)
            break;
        bit <<= 1;
    }
    return bit;
}

/*
 * The tiles of every room into room_tiles[] and the cells of its items ('o', 'k', 'L', in
 * row-major order: bit i of ram_taken[room]) into item_cell[]. Once, at boot with the LCD off
 * (SDCC's sm83 code needs a few frames per room); afterwards the game edits room_tiles[] in
 * place when an item is taken, so a room change is only a copy to VRAM.
 */
static void build_rooms(void)
{
    uint8_t room, tile, count;
    uint16_t index;
    const char *map;
    uint8_t *dst;
    for (room = 0; room < NUM_ROOMS; room++) {
        map = room_maps[room];
        dst = room_tiles[room];
        count = 0;
        for (index = 0; index < ROOM_W * ROOM_H; index++) {
            tile = char_tile(map[index]);
            if ((tile == T_COIN || tile == T_KEY || tile == T_LOCKED) && count < MAX_ITEMS)
                item_cell[room][count++] = index;
            dst[index] = tile;
        }
        item_count[room] = count;
    }
}

static uint8_t digit(uint8_t value)
{
    return T_DIGIT0 + (value > 9 ? 9 : value);
}

static void hud_coins(uint8_t *tens, uint8_t *ones)
{
    uint8_t value = ram_coins;
    uint8_t t = 0;
    if (value > 99)
        value = 99;
    while (value >= 10) {
        value -= 10;
        t++;
    }
    *tens = T_DIGIT0 + t;
    *ones = T_DIGIT0 + value;
}

static void queue_hud(void)
{
    uint8_t tens, ones;
    hud_coins(&tens, &ones);
    queue(HUD_COINS_X, tens);
    queue(HUD_COINS_X + 1, ones);
    queue(HUD_KEYS_X, digit(ram_keys));
    if (ram_won) {
        queue(HUD_WIN_X, T_LETTER_W);
        queue(HUD_WIN_X + 1, T_LETTER_I);
        queue(HUD_WIN_X + 2, T_LETTER_N);
    }
}

/* The whole visible screen (HUD + room + hero). LCD must be off. */
static void draw_screen(void)
{
    volatile uint8_t *dst = BG_MAP;
    const uint8_t *src = cur;
    uint8_t x, y;
    uint8_t tens, ones;

    for (x = 0; x < SCREEN_W; x++) {
        dst[x] = T_BLANK;
        dst[32 + x] = T_HUDLINE;
    }
    hud_coins(&tens, &ones);
    dst[HUD_COINS_X - 1] = T_LETTER_C;
    dst[HUD_COINS_X] = tens;
    dst[HUD_COINS_X + 1] = ones;
    dst[HUD_KEYS_X - 1] = T_LETTER_K;
    dst[HUD_KEYS_X] = digit(ram_keys);
    dst[HUD_ROOM_X - 1] = T_LETTER_R;
    dst[HUD_ROOM_X] = digit(ram_room);
    if (ram_won) {
        dst[HUD_WIN_X] = T_LETTER_W;
        dst[HUD_WIN_X + 1] = T_LETTER_I;
        dst[HUD_WIN_X + 2] = T_LETTER_N;
    }

    dst = BG_MAP + (HUD_ROWS << 5);
    for (y = 0; y < ROOM_H; y++) {
        for (x = 0; x < ROOM_W; x++)
            dst[x] = *src++;
        dst += 32;
    }
    BG_MAP[cell_pos(ram_hero_x, ram_hero_y)] = T_HERO;
}

/* Stepped on the border door at (x, y): enter the neighbouring room. */
static void enter_room(uint8_t x, uint8_t y)
{
    uint8_t side, next;
    if (y == 0)
        side = 0, y = ROOM_H - 2;
    else if (x == ROOM_W - 1)
        side = 1, x = 1;
    else if (y == ROOM_H - 1)
        side = 2, y = 1;
    else
        side = 3, x = ROOM_W - 2;
    next = room_links[ram_room][side];
    if (next == NO_ROOM)
        return; /* a door to nowhere is a wall (no such door in rooms.h) */
    ram_room = next;
    ram_hero_x = x;
    ram_hero_y = y;
    ram_visited |= (uint8_t)(1 << next);
    cur = room_tiles[next];
    redraw_room = 1;
}

static void try_move(uint8_t dir)
{
    uint8_t x = ram_hero_x;
    uint8_t y = ram_hero_y;
    uint16_t index;

    ram_moves++;
    if (dir == PAD_UP)
        y--;
    else if (dir == PAD_DOWN)
        y++;
    else if (dir == PAD_LEFT)
        x--;
    else
        x++;
    index = cell_index(x, y);

    switch (cur[index]) {
    case T_WALL:
        return;
    case T_LOCKED:
        if (ram_keys) {
            ram_keys--;
            ram_doors++;
            ram_taken[ram_room] |= item_bit(index);
            cur[index] = T_DOOR;
            queue(cell_pos(x, y), T_DOOR);
            queue_hud();
        }
        return;
    case T_DOOR:
        enter_room(x, y);
        return;
    case T_COIN:
        ram_coins++;
        ram_taken[ram_room] |= item_bit(index);
        cur[index] = T_FLOOR;
        queue_hud();
        break;
    case T_KEY:
        ram_keys++;
        ram_keys_total++;
        ram_taken[ram_room] |= item_bit(index);
        cur[index] = T_FLOOR;
        queue_hud();
        break;
    case T_GOAL:
        ram_won = 1;
        ram_mode = MODE_WON;
        queue_hud();
        break;
    default:
        break;
    }
    queue(cell_pos(ram_hero_x, ram_hero_y), cur[cell_index(ram_hero_x, ram_hero_y)]);
    queue(cell_pos(x, y), T_HERO);
    ram_hero_x = x;
    ram_hero_y = y;
}

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

static void init_hero(void)
{
    const char *map = room_maps[0];
    uint16_t i;
    for (i = 0; i < ROOM_W * ROOM_H; i++) {
        if (map[i] == '@')
            break;
    }
    ram_hero_y = (uint8_t)(i / ROOM_W);
    ram_hero_x = (uint8_t)(i % ROOM_W);
}

void main(void)
{
    uint8_t pad, edge;
    uint16_t i;
    uint8_t j;

    /* The LCD may only be switched off in VBlank. */
    if (rLCDC & 0x80) {
        while (rLY != 144)
            ;
        rLCDC = 0;
    }
    load_tiles();
    for (i = 0; i < 32 * 32; i++)
        BG_MAP[i] = T_BLANK;
    for (j = 0; j < 160; j++)
        OAM[j] = 0;
    rBGP = 0xE4;
    rOBP0 = 0xE4;
    rOBP1 = 0xE4;
    rSCX = 0;
    rSCY = 0;
    rWX = 0;
    rWY = 0;

    ram_version = RAM_CONTRACT_VERSION;
    ram_room = 0;
    ram_visited = 1;
    init_hero();
    build_rooms();
    cur = room_tiles[0];
    draw_screen();

    rIF = 0;
    rIE = IE_VBLANK;
    rLCDC = LCDC_ON;
    __asm__("ei");
    ram_magic0 = 'D';
    ram_magic1 = 'G';
    ram_mode = MODE_PLAYING;

    for (;;) {
        wait_vblank();
        if (redraw_room) {
            rLCDC = 0;
            draw_screen();
            rLCDC = LCDC_ON;
            redraw_room = 0;
            q_len = 0;
        } else {
            for (j = 0; j < q_len; j++)
                BG_MAP[q_pos[j]] = q_tile[j];
            q_len = 0;
        }
        pad = read_pad();
        edge = pad & (uint8_t)~ram_pad_prev;
        ram_pad_prev = pad;
        if (ram_mode != MODE_PLAYING)
            continue;
        if (edge & PAD_UP)
            try_move(PAD_UP);
        else if (edge & PAD_DOWN)
            try_move(PAD_DOWN);
        else if (edge & PAD_LEFT)
            try_move(PAD_LEFT);
        else if (edge & PAD_RIGHT)
            try_move(PAD_RIGHT);
    }
}
