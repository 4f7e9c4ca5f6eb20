//! Moving objects: their classes, shapes, textures and motion.
//!
//! Each class has a silhouette a detector can tell apart: a car is a wide body with a cabin and
//! dark wheels, a pedestrian a tall narrow figure with a head and swinging legs, a two-wheeler two
//! wheel rings with a rider. Shapes are drawn with anti-aliased edges (coverage from a signed
//! distance), so an edge moving by a fraction of a pixel changes intensity smoothly, as in a real
//! optical image.

use super::rng::SplitMix64;
use super::texture::{Bitmap, ValueNoise};

/// The object classes of synthetic scenes; `class_id` follows Gen1 (car 0, pedestrian 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectClass {
    Car,
    Pedestrian,
    TwoWheeler,
}

impl ObjectClass {
    pub const ALL: [ObjectClass; 3] = [
        ObjectClass::Car,
        ObjectClass::Pedestrian,
        ObjectClass::TwoWheeler,
    ];

    pub fn class_id(self) -> u32 {
        match self {
            ObjectClass::Car => 0,
            ObjectClass::Pedestrian => 1,
            ObjectClass::TwoWheeler => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ObjectClass::Car => "car",
            ObjectClass::Pedestrian => "pedestrian",
            ObjectClass::TwoWheeler => "two-wheeler",
        }
    }

    /// Width over height of the bounding box.
    fn aspect(self) -> f32 {
        match self {
            ObjectClass::Car => 2.0,
            ObjectClass::Pedestrian => 0.4,
            ObjectClass::TwoWheeler => 1.1,
        }
    }

    /// Relative height: pedestrians are taller than cars in this scale, two-wheelers in between.
    fn height_scale(self) -> f32 {
        match self {
            ObjectClass::Car => 0.6,
            ObjectClass::Pedestrian => 1.0,
            ObjectClass::TwoWheeler => 0.75,
        }
    }
}

/// How an object is drawn and how it moves; sampled once per track.
#[derive(Debug, Clone)]
pub struct SceneObject {
    pub track_id: u32,
    pub class: ObjectClass,
    /// Centre of the bounding box, pixels.
    pub cx: f32,
    pub cy: f32,
    pub vx: f32,
    pub vy: f32,
    pub ax: f32,
    pub ay: f32,
    /// Bounding-box size, pixels.
    pub w: f32,
    pub h: f32,
    /// Bounces off the sensor borders; otherwise leaves and is replaced by a new track.
    pub bounces: bool,
    /// Drawing order: larger is nearer.
    pub depth: f32,
    brightness: f32,
    /// Second tone (windows, head), contrasting with `brightness`.
    accent: f32,
    gait_phase: f32,
    min_speed: f32,
    max_speed: f32,
    texture: Bitmap,
}

/// What a spawn needs to know about the scene.
#[derive(Debug, Clone, Copy)]
pub struct SpawnLimits {
    pub width: f32,
    pub height: f32,
    /// Range of the tallest class's height, pixels.
    pub height_px: (f32, f32),
    pub speed: (f32, f32),
    pub max_accel: f32,
    pub bounce_fraction: f32,
}

impl SceneObject {
    /// A new object of `class`; inside the sensor when `inside`, else entering from an edge.
    pub fn spawn(
        track_id: u32,
        class: ObjectClass,
        limits: &SpawnLimits,
        inside: bool,
        rng: &mut SplitMix64,
    ) -> Self {
        let scale = rng.range(f64::from(limits.height_px.0), f64::from(limits.height_px.1)) as f32;
        let h = (scale * class.height_scale())
            .min(limits.height * 0.9)
            .max(4.0);
        let w = (h * class.aspect()).min(limits.width * 0.9).max(3.0);
        let speed = rng.range(f64::from(limits.speed.0), f64::from(limits.speed.1)) as f32;
        let mut angle = rng.range(0.0, std::f64::consts::TAU) as f32;
        // Cars and two-wheelers mostly drive sideways, pedestrians walk anywhere.
        if class != ObjectClass::Pedestrian {
            let lean = rng.range(-0.35, 0.35) as f32;
            angle = if rng.coin() {
                lean
            } else {
                std::f32::consts::PI + lean
            };
        }
        let (mut cx, mut cy);
        if inside {
            cx = rng.range(
                f64::from(w / 2.0),
                f64::from((limits.width - w / 2.0).max(w / 2.0)),
            ) as f32;
            cy = rng.range(
                f64::from(h / 2.0),
                f64::from((limits.height - h / 2.0).max(h / 2.0)),
            ) as f32;
        } else {
            // Start just outside the border the object heads away from, at a random place along it.
            cx = rng.range(0.0, f64::from(limits.width)) as f32;
            cy = rng.range(0.0, f64::from(limits.height)) as f32;
            let (dx, dy) = (angle.cos(), angle.sin());
            if dx.abs() * limits.height > dy.abs() * limits.width {
                cx = if dx > 0.0 {
                    -w / 2.0
                } else {
                    limits.width + w / 2.0
                };
            } else {
                cy = if dy > 0.0 {
                    -h / 2.0
                } else {
                    limits.height + h / 2.0
                };
            }
        }
        let accel = rng.range(0.0, f64::from(limits.max_accel)) as f32;
        let accel_angle = rng.range(0.0, std::f64::consts::TAU) as f32;
        let brightness = if rng.coin() {
            rng.range(0.03, 0.25) as f32
        } else {
            rng.range(0.7, 0.97) as f32
        };
        let accent = (1.0 - brightness) * rng.range(0.6, 1.0) as f32;
        let noise = ValueNoise::new(rng.next_u64(), rng.range(2.0, 5.0) as f32, 2);
        let texture = Bitmap::from_noise(&noise, w.ceil() as usize + 3, h.ceil() as usize + 3);
        Self {
            track_id,
            class,
            cx,
            cy,
            vx: speed * angle.cos(),
            vy: speed * angle.sin(),
            ax: accel * accel_angle.cos(),
            ay: accel * accel_angle.sin(),
            w,
            h,
            bounces: inside && rng.uniform() < f64::from(limits.bounce_fraction),
            depth: rng.uniform() as f32,
            brightness,
            accent,
            gait_phase: rng.range(0.0, std::f64::consts::TAU) as f32,
            min_speed: limits.speed.0,
            max_speed: limits.speed.1.max(limits.speed.0),
            texture,
        }
    }

    /// Moves by `dt` seconds: constant acceleration with the speed kept in range, bouncing off
    /// the borders when the object bounces.
    pub fn advance(&mut self, dt: f32, width: f32, height: f32) {
        self.vx += self.ax * dt;
        self.vy += self.ay * dt;
        let speed = self.vx.hypot(self.vy);
        if speed > self.max_speed || (speed < self.min_speed && speed > 0.0) {
            let k = speed.clamp(self.min_speed, self.max_speed) / speed;
            self.vx *= k;
            self.vy *= k;
            // Stop pushing further out of range: turn the acceleration around.
            self.ax = -self.ax;
            self.ay = -self.ay;
        }
        self.cx += self.vx * dt;
        self.cy += self.vy * dt;
        self.gait_phase += speed * dt / (0.08 * self.h).max(0.5);
        if self.bounces {
            let (hw, hh) = (self.w / 2.0, self.h / 2.0);
            if (self.cx - hw < 0.0 && self.vx < 0.0) || (self.cx + hw > width && self.vx > 0.0) {
                self.vx = -self.vx;
                self.ax = -self.ax;
            }
            if (self.cy - hh < 0.0 && self.vy < 0.0) || (self.cy + hh > height && self.vy > 0.0) {
                self.vy = -self.vy;
                self.ay = -self.ay;
            }
        }
    }

    /// Fastest any of the object's pixels moves, pixels per second (walking legs swing ahead of
    /// the body).
    pub fn fastest_pixel_speed(&self) -> f32 {
        let speed = self.vx.hypot(self.vy);
        match self.class {
            ObjectClass::Pedestrian => 2.0 * speed,
            _ => speed,
        }
    }

    /// True once the object has left the sensor for good (only non-bouncing objects leave).
    pub fn has_left(&self, width: f32, height: f32) -> bool {
        let (hw, hh) = (self.w / 2.0, self.h / 2.0);
        (self.cx + hw < 0.0 && self.vx <= 0.0)
            || (self.cx - hw > width && self.vx >= 0.0)
            || (self.cy + hh < 0.0 && self.vy <= 0.0)
            || (self.cy - hh > height && self.vy >= 0.0)
            || self.cx.abs() > 4.0 * width + self.w
            || self.cy.abs() > 4.0 * height + self.h
    }

    /// Bounding box `(x0, y0, x1, y1)` in pixels, unclipped.
    pub fn bounds(&self) -> (f32, f32, f32, f32) {
        let (hw, hh) = (self.w / 2.0, self.h / 2.0);
        (self.cx - hw, self.cy - hh, self.cx + hw, self.cy + hh)
    }

    /// Paints the object over `image` (linear intensity, row-major `width` wide). Returns the
    /// touched pixel rectangle `(x0, y0, x1, y1)`, exclusive ends, or none when off-sensor.
    pub fn draw(
        &self,
        image: &mut [f32],
        width: usize,
        height: usize,
    ) -> Option<(usize, usize, usize, usize)> {
        let (bx0, by0, bx1, by1) = self.bounds();
        let clamp_x = |v: f32| (v.max(0.0) as usize).min(width);
        let clamp_y = |v: f32| (v.max(0.0) as usize).min(height);
        let (x0, x1) = (clamp_x(bx0.floor() - 1.0), clamp_x(bx1.ceil() + 1.0));
        let (y0, y1) = (clamp_y(by0.floor() - 1.0), clamp_y(by1.ceil() + 1.0));
        if x0 >= x1 || y0 >= y1 {
            return None;
        }
        for y in y0..y1 {
            let ly = y as f32 + 0.5 - self.cy;
            let row = &mut image[y * width..(y + 1) * width];
            for (x, pixel) in row.iter_mut().enumerate().take(x1).skip(x0) {
                let lx = x as f32 + 0.5 - self.cx;
                *pixel = self.shade(lx, ly, *pixel);
            }
        }
        Some((x0, y0, x1, y1))
    }

    /// Intensity at object-local `(lx, ly)` (pixels from the centre) over `under`.
    #[inline]
    fn shade(&self, lx: f32, ly: f32, under: f32) -> f32 {
        let (w, h) = (self.w, self.h);
        let cover = |sd: f32| (0.5 - sd).clamp(0.0, 1.0);
        // Parts back to front: (coverage, tone).
        let parts: [(f32, Tone); 5] = match self.class {
            ObjectClass::Car => {
                let r = 0.17 * h;
                [
                    (
                        cover(sd_box(lx, ly - 0.12 * h, 0.5 * w, 0.2 * h)),
                        Tone::Body,
                    ),
                    (
                        cover(sd_box(lx + 0.03 * w, ly + 0.25 * h, 0.3 * w, 0.22 * h)),
                        Tone::Body,
                    ),
                    (
                        cover(sd_box(lx + 0.03 * w, ly + 0.24 * h, 0.24 * w, 0.13 * h)),
                        Tone::Accent,
                    ),
                    (
                        cover(sd_circle(lx - 0.3 * w, ly - 0.32 * h, r)),
                        Tone::Wheel,
                    ),
                    (
                        cover(sd_circle(lx + 0.3 * w, ly - 0.32 * h, r)),
                        Tone::Wheel,
                    ),
                ]
            }
            ObjectClass::Pedestrian => {
                let swing = 0.15 * w * self.gait_phase.sin();
                [
                    (
                        cover(sd_box(
                            lx - 0.18 * w - swing,
                            ly - 0.3 * h,
                            0.12 * w,
                            0.2 * h,
                        )),
                        Tone::Shaded,
                    ),
                    (
                        cover(sd_box(
                            lx + 0.18 * w + swing,
                            ly - 0.3 * h,
                            0.12 * w,
                            0.2 * h,
                        )),
                        Tone::Shaded,
                    ),
                    (
                        cover(sd_ellipse(lx, ly + 0.05 * h, 0.5 * w, 0.25 * h)),
                        Tone::Body,
                    ),
                    (cover(sd_circle(lx, ly + 0.39 * h, 0.11 * h)), Tone::Accent),
                    (0.0, Tone::Body),
                ]
            }
            ObjectClass::TwoWheeler => {
                let (r, tyre) = (0.17 * h, 0.05 * h);
                [
                    (
                        cover(sd_ring(lx - 0.3 * w, ly - 0.28 * h, r, tyre)),
                        Tone::Wheel,
                    ),
                    (
                        cover(sd_ring(lx + 0.3 * w, ly - 0.28 * h, r, tyre)),
                        Tone::Wheel,
                    ),
                    (
                        cover(sd_box(lx, ly - 0.2 * h, 0.3 * w, 0.03 * h)),
                        Tone::Body,
                    ),
                    (
                        cover(sd_ellipse(lx, ly + 0.15 * h, 0.12 * w, 0.2 * h)),
                        Tone::Body,
                    ),
                    (
                        cover(sd_circle(lx - 0.02 * w, ly + 0.42 * h, 0.08 * h)),
                        Tone::Accent,
                    ),
                ]
            }
        };
        let mut out = under;
        // The textured body tone, sampled only where a body part shows.
        let mut body = None;
        for (a, tone) in parts {
            if a <= 0.0 {
                continue;
            }
            let mut body_tone = || {
                *body.get_or_insert_with(|| {
                    let tex =
                        0.6 + 0.8 * self.texture.sample(lx + w / 2.0 + 1.0, ly + h / 2.0 + 1.0);
                    (self.brightness * tex).min(1.0)
                })
            };
            let value = match tone {
                Tone::Body => body_tone(),
                Tone::Shaded => 0.8 * body_tone(),
                Tone::Accent => self.accent,
                Tone::Wheel => WHEEL,
            };
            out += (value - out) * a;
        }
        out
    }
}

/// The colour of a part of an object.
#[derive(Debug, Clone, Copy)]
enum Tone {
    /// The object's textured brightness.
    Body,
    /// A darker shade of the body (legs).
    Shaded,
    /// The contrasting second tone (windows, head).
    Accent,
    Wheel,
}

/// Tyres are near black.
const WHEEL: f32 = 0.04;

/// Every shape function returns this beyond half a pixel outside, where coverage is zero anyway.
const FAR: f32 = 1.0;

/// Signed distance to an axis-aligned box centred at the origin with half sizes `(hx, hy)`.
#[inline]
fn sd_box(px: f32, py: f32, hx: f32, hy: f32) -> f32 {
    let dx = px.abs() - hx;
    let dy = py.abs() - hy;
    if dx >= 0.5 || dy >= 0.5 {
        return FAR;
    }
    let (ox, oy) = (dx.max(0.0), dy.max(0.0));
    let outside = (ox * ox + oy * oy).sqrt();
    outside + dx.max(dy).min(0.0)
}

#[inline]
fn sd_circle(px: f32, py: f32, r: f32) -> f32 {
    let d2 = px * px + py * py;
    if d2 >= (r + 0.5) * (r + 0.5) {
        return FAR;
    }
    d2.sqrt() - r
}

/// A ring (annulus) of mid radius `r` and half thickness `half`.
#[inline]
fn sd_ring(px: f32, py: f32, r: f32, half: f32) -> f32 {
    let d2 = px * px + py * py;
    let outer = r + half + 0.5;
    if d2 >= outer * outer {
        return FAR;
    }
    (d2.sqrt() - r).abs() - half
}

/// Approximate signed distance to an ellipse with radii `(rx, ry)` (exact on the axes).
#[inline]
fn sd_ellipse(px: f32, py: f32, rx: f32, ry: f32) -> f32 {
    if px.abs() >= rx + 0.5 || py.abs() >= ry + 0.5 {
        return FAR;
    }
    let (ux, uy) = (px / rx.max(1e-3), py / ry.max(1e-3));
    let k = (ux * ux + uy * uy).sqrt();
    (k - 1.0) * rx.min(ry)
}
