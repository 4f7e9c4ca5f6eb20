//! Colours and the default series palette.

/// An opaque 8-bit RGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Color {
    /// Red.
    pub r: u8,
    /// Green.
    pub g: u8,
    /// Blue.
    pub b: u8,
}

impl Color {
    /// A colour from its components.
    pub const fn rgb(r: u8, g: u8, b: u8) -> Self {
        Self { r, g, b }
    }

    /// A colour from `0xRRGGBB`.
    pub const fn hex(v: u32) -> Self {
        Self::rgb((v >> 16) as u8, (v >> 8) as u8, v as u8)
    }

    /// Mix `self` towards `other`; `t = 0` keeps `self`, `t = 1` gives `other`.
    pub fn mix(self, other: Color, t: f32) -> Color {
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let m = |a: u8, b: u8| (f32::from(a) + (f32::from(b) - f32::from(a)) * t).round() as u8;
        Color::rgb(m(self.r, other.r), m(self.g, other.g), m(self.b, other.b))
    }

    /// Pure white: the background.
    pub const WHITE: Color = Color::hex(0xFFFFFF);
    /// Pure black.
    pub const BLACK: Color = Color::hex(0x000000);
    /// Text colour: almost black.
    pub const TEXT: Color = Color::hex(0x222222);
    /// Secondary text (tick labels, notes).
    pub const TEXT_DIM: Color = Color::hex(0x555555);
    /// Axis frame and tick marks.
    pub const AXIS: Color = Color::hex(0x808080);
    /// Dashed grid lines.
    pub const GRID: Color = Color::hex(0xDADADA);
}

/// Okabe-Ito colours, ordered so the first few are the most distinct on white
/// (the pale yellow comes last). Series take them in order and wrap around.
pub const PALETTE: [Color; 8] = [
    Color::hex(0x0072B2), // blue
    Color::hex(0xD55E00), // vermillion
    Color::hex(0x009E73), // bluish green
    Color::hex(0xE69F00), // orange
    Color::hex(0xCC79A7), // reddish purple
    Color::hex(0x56B4E9), // sky blue
    Color::hex(0x000000), // black
    Color::hex(0xF0E442), // yellow
];

/// The `i`-th palette colour (wraps around).
pub fn palette(i: usize) -> Color {
    PALETTE[i % PALETTE.len()]
}
