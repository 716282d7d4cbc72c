/*
 * The dungeon: 5 rooms of 20x16 tiles, drawn below a 2-row HUD. One string per room,
 * row-major, 16 rows of 20 characters. tests/test_dungeon_rom.py parses this file for its
 * reference model, so keep the format: `static const char roomN[] =` + 16 quoted rows.
 *
 *   #  wall          .  floor        @  hero start (room 0 only; floor)
 *   D  door          L  locked door (bump it holding a key: it opens, the hero stays)
 *   o  coin          k  key          G  goal (stepping on it wins)
 *
 * Doors sit on the border; stepping on a door enters the neighbouring room (ROOM_LINKS) on the
 * tile just inside the matching door: east door (19,y) -> (1,y), west (0,y) -> (18,y),
 * south (x,15) -> (x,1), north (x,0) -> (x,14).
 *
 *   [0 start] -- [1 hall]
 *       |            |
 *   [2 keys ] -- [3 gate] =L= [4 goal]
 */
#ifndef DUNGEON_ROOMS_H
#define DUNGEON_ROOMS_H

#define NUM_ROOMS 5
#define ROOM_W 20
#define ROOM_H 16
#define NO_ROOM 0xFF

static const char room0[] =
    "####################"
    "#..................#"
    "#..o..o..#.........#"
    "#........#..o...o..#"
    "#..@.o...#.........D"
    "#........#####.....#"
    "#..o.....#.........#"
    "#........#..o......#"
    "#####.####.........#"
    "#..................#"
    "#..................#"
    "#.....o............#"
    "#..........####....#"
    "#..........#..#....#"
    "#..................#"
    "##########D#########";

static const char room1[] =
    "####################"
    "#........o.........#"
    "#..######..######..#"
    "#..#....#..#....#..#"
    "D..#.o..#..#..o.#..#"
    "#..#....#..#....#..#"
    "#..##.###..###.##..#"
    "#..................#"
    "#..o....o....o.....#"
    "#..................#"
    "#######.....########"
    "#..................#"
    "#..o............o..#"
    "#..................#"
    "#..................#"
    "###############D####";

static const char room2[] =
    "##########D#########"
    "#..................#"
    "#.####.......####..#"
    "#.#..#...o...#..#..#"
    "#.#o.#.......#.o#..#"
    "#.##.#.......##.#..#"
    "#..................#"
    "#..................#"
    "###.#####.#####.####"
    "#.....#.....#......#"
    "#..o..#..o..#......D"
    "#.....#.....#......#"
    "#.....#.....#...o..#"
    "#.k...#.....#......#"
    "#.....#..o..#......#"
    "####################";

static const char room3[] =
    "###############D####"
    "#..................#"
    "#..................#"
    "#...####....####...#"
    "#...#..........#...#"
    "#...#..o....o..#...#"
    "#...#..........#...#"
    "#...#...####...#...L"
    "#...#...#..#...#...#"
    "#...#...#o.#...#...#"
    "D.......#..#.......#"
    "#...#...#..#...#...#"
    "#...#..........#...#"
    "#...####....####...#"
    "#..................#"
    "####################";

static const char room4[] =
    "####################"
    "#..................#"
    "#..o...........o...#"
    "#..................#"
    "#....##########....#"
    "#....#........#....#"
    "#....#..o..o..#....#"
    "D....#........#....#"
    "#....#........#....#"
    "#....####..####....#"
    "#..................#"
    "#..................#"
    "#..o...........G...#"
    "#..................#"
    "#..................#"
    "####################";

static const char *const room_maps[NUM_ROOMS] = {room0, room1, room2, room3, room4};

/* ROOM_LINKS: neighbour of each room through its north, east, south, west border door. */
static const uint8_t room_links[NUM_ROOMS][4] = {
    /*        N        E        S        W */
    /* 0 */ {NO_ROOM, 1,       2,       NO_ROOM},
    /* 1 */ {NO_ROOM, NO_ROOM, 3,       0},
    /* 2 */ {0,       3,       NO_ROOM, NO_ROOM},
    /* 3 */ {1,       4,       NO_ROOM, 2},
    /* 4 */ {NO_ROOM, NO_ROOM, NO_ROOM, 3},
};

#endif
