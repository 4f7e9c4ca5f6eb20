//! An embedded 5x7 bitmap font (plus one descender row) for printable ASCII, drawn
//! with integer scaling.
//!
//! Each glyph is 8 rows of 5 bits, most significant bit on the left. Rows 0..=6 hold
//! capitals and digits (row 6 is the baseline row); row 7 is for descenders (`g j p q y`,
//! `,` and `_`). A character cell is 6x9 font pixels: one column and one row of spacing.
//! Characters outside `' '..='~'` are drawn as `?`.

use crate::canvas::{Canvas, Rect};
use crate::color::Color;

/// Glyph width in font pixels.
pub const GLYPH_W: i32 = 5;
/// Glyph height in font pixels, descender row included.
pub const GLYPH_H: i32 = 8;
/// Horizontal advance per character in font pixels.
pub const ADVANCE: i32 = 6;
/// Line height in font pixels.
pub const LINE_H: i32 = 9;

/// First and last characters with a glyph.
pub const FIRST: char = ' ';
/// Last character with a glyph.
pub const LAST: char = '~';

/// Glyphs for ASCII 32..=126, in order.
#[rustfmt::skip]
const GLYPHS: [[u8; 8]; 95] = [
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // ' '
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00100, 0b00000], // '!'
    [0b01010, 0b01010, 0b01010, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // '"'
    [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010, 0b00000], // '#'
    [0b00100, 0b01111, 0b10100, 0b01110, 0b00101, 0b11110, 0b00100, 0b00000], // '$'
    [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011, 0b00000], // '%'
    [0b01100, 0b10010, 0b10100, 0b01000, 0b10101, 0b10010, 0b01101, 0b00000], // '&'
    [0b00100, 0b00100, 0b00100, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // "'"
    [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010, 0b00000], // '('
    [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000, 0b00000], // ')'
    [0b00000, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0b00000, 0b00000], // '*'
    [0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000, 0b00000], // '+'
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000], // ','
    [0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000, 0b00000], // '-'
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100, 0b00000], // '.'
    [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000, 0b00000], // '/'
    [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110, 0b00000], // '0'
    [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // '1'
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111, 0b00000], // '2'
    [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110, 0b00000], // '3'
    [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010, 0b00000], // '4'
    [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110, 0b00000], // '5'
    [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110, 0b00000], // '6'
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00000], // '7'
    [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110, 0b00000], // '8'
    [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100, 0b00000], // '9'
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000, 0b00000], // ':'
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b00100, 0b01000, 0b00000], // ';'
    [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00000], // '<'
    [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000], // '='
    [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000, 0b00000], // '>'
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100, 0b00000], // '?'
    [0b01110, 0b10001, 0b00001, 0b01101, 0b10101, 0b10101, 0b01110, 0b00000], // '@'
    [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001, 0b00000], // 'A'
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110, 0b00000], // 'B'
    [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110, 0b00000], // 'C'
    [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100, 0b00000], // 'D'
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111, 0b00000], // 'E'
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000, 0b00000], // 'F'
    [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111, 0b00000], // 'G'
    [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001, 0b00000], // 'H'
    [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // 'I'
    [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100, 0b00000], // 'J'
    [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001, 0b00000], // 'K'
    [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111, 0b00000], // 'L'
    [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001, 0b00000], // 'M'
    [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001, 0b00000], // 'N'
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000], // 'O'
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000, 0b00000], // 'P'
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101, 0b00000], // 'Q'
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001, 0b00000], // 'R'
    [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110, 0b00000], // 'S'
    [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000], // 'T'
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000], // 'U'
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00000], // 'V'
    [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010, 0b00000], // 'W'
    [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001, 0b00000], // 'X'
    [0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000], // 'Y'
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111, 0b00000], // 'Z'
    [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110, 0b00000], // '['
    [0b00000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00001, 0b00000, 0b00000], // '\\'
    [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110, 0b00000], // ']'
    [0b00100, 0b01010, 0b10001, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // '^'
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111], // '_'
    [0b01000, 0b00100, 0b00010, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // '`'
    [0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111, 0b00000], // 'a'
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110, 0b00000], // 'b'
    [0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110, 0b00000], // 'c'
    [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111, 0b00000], // 'd'
    [0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110, 0b00000], // 'e'
    [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000, 0b00000], // 'f'
    [0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110], // 'g'
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0b00000], // 'h'
    [0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // 'i'
    [0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100], // 'j'
    [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b00000], // 'k'
    [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // 'l'
    [0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10101, 0b10101, 0b00000], // 'm'
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0b00000], // 'n'
    [0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000], // 'o'
    [0b00000, 0b00000, 0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000], // 'p'
    [0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b00001], // 'q'
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000, 0b00000], // 'r'
    [0b00000, 0b00000, 0b01111, 0b10000, 0b01110, 0b00001, 0b11110, 0b00000], // 's'
    [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110, 0b00000], // 't'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101, 0b00000], // 'u'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00000], // 'v'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010, 0b00000], // 'w'
    [0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b00000], // 'x'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110], // 'y'
    [0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111, 0b00000], // 'z'
    [0b00010, 0b00100, 0b00100, 0b01000, 0b00100, 0b00100, 0b00010, 0b00000], // '{'
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000], // '|'
    [0b01000, 0b00100, 0b00100, 0b00010, 0b00100, 0b00100, 0b01000, 0b00000], // '}'
    [0b00000, 0b00000, 0b01000, 0b10101, 0b00010, 0b00000, 0b00000, 0b00000], // '~'
];

/// The 8 row bitmaps of `c` (`?` for characters without a glyph).
pub fn glyph(c: char) -> &'static [u8; 8] {
    let code = c as u32;
    let idx = if (FIRST as u32..=LAST as u32).contains(&code) {
        code - FIRST as u32
    } else {
        '?' as u32 - FIRST as u32
    };
    &GLYPHS[idx as usize]
}

/// How text is drawn: size, colour, weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextStyle {
    /// Integer scale: each font pixel becomes `scale x scale` image pixels (at least 1).
    pub scale: i32,
    /// Text colour.
    pub color: Color,
    /// Bold: every stroke is drawn twice, one image pixel apart.
    pub bold: bool,
}

impl TextStyle {
    /// Regular text at `scale` in `color`.
    pub fn new(scale: i32, color: Color) -> Self {
        Self {
            scale: scale.max(1),
            color,
            bold: false,
        }
    }

    /// The same style, bold.
    pub fn bold(self) -> Self {
        Self { bold: true, ..self }
    }

    fn s(&self) -> i32 {
        self.scale.clamp(1, 64)
    }

    /// Width in image pixels of `text` on one line (no trailing spacing).
    pub fn width(&self, text: &str) -> i32 {
        let n = text.chars().count().min(100_000) as i32;
        if n == 0 {
            return 0;
        }
        (n * ADVANCE - (ADVANCE - GLYPH_W)) * self.s() + i32::from(self.bold)
    }

    /// Height in image pixels of one line of text (capitals, descenders, spacing).
    pub fn line_height(&self) -> i32 {
        LINE_H * self.s()
    }

    /// Height of capitals in image pixels (what to centre on).
    pub fn cap_height(&self) -> i32 {
        (GLYPH_H - 1) * self.s()
    }

    /// Draws `text` with its top-left corner at `(x, y)`.
    pub fn draw(&self, canvas: &mut Canvas, x: i32, y: i32, text: &str) {
        let s = self.s();
        let mut cx = x;
        for ch in text.chars() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                        let px = cx.saturating_add(col * s);
                        let py = y.saturating_add(row as i32 * s);
                        canvas
                            .fill_rect(Rect::new(px, py, s + i32::from(self.bold), s), self.color);
                    }
                }
            }
            cx = cx.saturating_add(ADVANCE * s);
        }
    }

    /// Draws `text` rotated a quarter turn counter-clockwise (reading upwards), with
    /// the bounding box's top-left corner at `(x, y)`: the box is `line_height()` wide
    /// (descenders on the right) and `width(text)` tall.
    pub fn draw_up(&self, canvas: &mut Canvas, x: i32, y: i32, text: &str) {
        let s = self.s();
        let total = self.width(text);
        // Character i starts `i * ADVANCE` font pixels above the bottom of the box.
        let bottom = y.saturating_add(total);
        for (i, ch) in text.chars().enumerate() {
            let g = glyph(ch);
            let base = bottom.saturating_sub((i as i32).saturating_mul(ADVANCE * s));
            for (row, bits) in g.iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                        // Rotating CCW: font column -> upward, font row -> rightward.
                        let px = x.saturating_add(row as i32 * s);
                        let py = base.saturating_sub((col + 1) * s);
                        canvas.fill_rect(
                            Rect::new(
                                px,
                                py.saturating_sub(i32::from(self.bold)),
                                s,
                                s + i32::from(self.bold),
                            ),
                            self.color,
                        );
                    }
                }
            }
        }
    }

    /// Draws `text` centred horizontally on `cx`, top at `y`.
    pub fn draw_centered(&self, canvas: &mut Canvas, cx: i32, y: i32, text: &str) {
        self.draw(canvas, cx.saturating_sub(self.width(text) / 2), y, text);
    }

    /// Draws `text` with its right edge at `right`, top at `y`.
    pub fn draw_right(&self, canvas: &mut Canvas, right: i32, y: i32, text: &str) {
        self.draw(canvas, right.saturating_sub(self.width(text)), y, text);
    }

    /// The longest prefix of `text` that fits in `max_width` pixels, ending in `..` when
    /// something was cut off. May be empty when not even `..` fits.
    pub fn fit(&self, text: &str, max_width: i32) -> String {
        if self.width(text) <= max_width {
            return text.to_string();
        }
        let per = ADVANCE * self.s();
        let max_chars = ((max_width + (ADVANCE - GLYPH_W) * self.s()) / per).max(0) as usize;
        truncate(text, max_chars)
    }
}

/// `text` cut to at most `max_chars` characters, ending in `..` when something was cut.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    if max_chars < 3 {
        return text.chars().take(max_chars).collect();
    }
    let mut s: String = text.chars().take(max_chars - 2).collect();
    s.push_str("..");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_printable_ascii_char_has_a_glyph() {
        for code in 32u8..=126 {
            let c = code as char;
            let g = glyph(c);
            if c == ' ' {
                assert!(g.iter().all(|&r| r == 0));
            } else {
                assert!(g.iter().any(|&r| r != 0), "{c:?} is blank");
            }
            assert!(g.iter().all(|&r| r < 32), "{c:?} is wider than 5 px");
        }
    }

    #[test]
    fn glyphs_are_distinct() {
        for a in 33u8..=126 {
            for b in (a + 1)..=126 {
                assert_ne!(
                    glyph(a as char),
                    glyph(b as char),
                    "{:?} and {:?}",
                    a as char,
                    b as char
                );
            }
        }
    }

    #[test]
    fn unknown_chars_fall_back_to_question_mark() {
        assert_eq!(glyph('é'), glyph('?'));
        assert_eq!(glyph('\n'), glyph('?'));
    }

    #[test]
    fn widths_and_truncation() {
        let st = TextStyle::new(2, Color::BLACK);
        assert_eq!(st.width(""), 0);
        assert_eq!(st.width("a"), 10);
        assert_eq!(st.width("ab"), 22);
        assert_eq!(truncate("hello world", 7), "hello..");
        assert_eq!(truncate("hi", 7), "hi");
        assert_eq!(truncate("hello", 2), "he");
        let fitted = st.fit("a very long label indeed", 100);
        assert!(st.width(&fitted) <= 100, "{fitted}");
        assert!(fitted.ends_with(".."));
    }

    #[test]
    fn drawing_sets_pixels_and_never_panics() {
        let mut c = Canvas::new(64, 32, Color::WHITE).unwrap();
        let st = TextStyle::new(2, Color::BLACK);
        st.draw(&mut c, 1, 1, "Hi");
        assert!(c.pixels().contains(&0));
        st.draw(&mut c, i32::MAX - 3, i32::MIN + 2, "overflow?");
        st.bold().draw_up(&mut c, -50, 40, "sideways ~ text");
        TextStyle::new(1000, Color::BLACK).draw(&mut c, 0, 0, "big");
    }
}
