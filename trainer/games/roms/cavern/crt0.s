;; Minimal start-up for builtin:cavern (SDCC sm83 / sdasgb).
;; Interrupt vectors, the cartridge header (entry point, Nintendo logo; makebin -Z writes the
;; title, cartridge type and both checksums), then: clear WRAM and HRAM, copy initialised
;; data, run static initialisers, call main(). No interrupt is enabled (the game polls LY); the
;; vectors are there so a stray one returns.

        .module crt0
        .globl  _main
        .globl  s__INITIALIZER, l__INITIALIZER, s__INITIALIZED

        .area   _HEADER (ABS)

        .org    0x0040          ; VBlank
        reti
        .org    0x0048          ; LCD STAT
        reti
        .org    0x0050          ; timer
        reti
        .org    0x0058          ; serial
        reti
        .org    0x0060          ; joypad
        reti

        .org    0x0068          ; signature: lets a `ram` adapter spec check it has the right ROM
        .ascii  "builtin:cavern ram v1"

        .org    0x0100          ; entry point after the boot ROM
        nop
        jp      init

        .org    0x0104          ; Nintendo logo (checked by the boot ROM)
        .db     0xCE,0xED,0x66,0x66,0xCC,0x0D,0x00,0x0B,0x03,0x73,0x00,0x83,0x00,0x0C,0x00,0x0D
        .db     0x00,0x08,0x11,0x1F,0x88,0x89,0x00,0x0E,0xDC,0xCC,0x6E,0xE6,0xDD,0xDD,0xD9,0x99
        .db     0xBB,0xBB,0x67,0x63,0x6E,0x0E,0xEC,0xCC,0xDD,0xDC,0x99,0x9F,0xBB,0xB9,0x33,0x3E

        .org    0x0134          ; title (makebin -yn CAVERN writes the same)
        .ascii  "CAVERN"
        .org    0x0146          ; SGB flag: none (makebin leaves this byte alone)
        .db     0x00
        .org    0x014C          ; mask ROM version 0 (makebin leaves this byte alone)
        .db     0x00

        .org    0x0150
init:
        di
        ld      sp, #0xE000     ; stack at the top of WRAM (grows down from 0xDFFF)

        ld      hl, #0xC000     ; clear WRAM 0xC000-0xDFFF: the RAM contract (0xD000) starts at zero
        ld      bc, #0x2000
1$:     xor     a
        ld      (hl+), a
        dec     bc
        ld      a, b
        or      c
        jr      nz, 1$

        ld      hl, #0xFF80     ; clear HRAM 0xFF80-0xFFFE (main copies the OAM DMA routine there)
        ld      c, #0x7F
        xor     a
2$:     ld      (hl+), a
        dec     c
        jr      nz, 2$

        ld      de, #s__INITIALIZER   ; copy initialised globals (none today, kept for safety)
        ld      hl, #s__INITIALIZED
        ld      bc, #l__INITIALIZER
3$:     ld      a, b
        or      c
        jr      z, 4$
        ld      a, (de)
        inc     de
        ld      (hl+), a
        dec     bc
        jr      3$
4$:
        call    gsinit
        call    _main
5$:     halt                    ; main never returns
        nop
        jr      5$

        ;; Area order for the linker: code and constants in ROM, then variables in WRAM.
        .area   _HOME
        .area   _CODE
        .area   _INITIALIZER
        .area   _GSINIT
gsinit::
        .area   _GSFINAL
        ret

        .area   _DATA
        .area   _INITIALIZED
        .area   _BSEG
        .area   _BSS
        .area   _HEAP
