//! End-to-end rendering: valid PNGs, series colours present, and no panics on bad input.

use prism_plot::{BarChart, Color, Figure, Legend, PlotError, Series, PALETTE};

/// Decodes an 8-bit RGB PNG into (width, height, RGB bytes).
fn try_decode(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), png::DecodingError> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, buf))
}

/// Decodes a PNG into (width, height, RGB bytes); panics (test failure) when invalid.
#[track_caller]
fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoded = try_decode(bytes);
    assert!(decoded.is_ok(), "invalid PNG: {decoded:?}");
    decoded.unwrap_or_default()
}

fn count(rgb: &[u8], c: Color) -> usize {
    rgb.chunks_exact(3)
        .filter(|p| p == &[c.r, c.g, c.b])
        .count()
}

fn steps(n: usize) -> Vec<usize> {
    (0..n).map(|i| i * 10).collect()
}

#[test]
fn figure_png_has_size_and_series_colours() {
    let xs = steps(200);
    let a: Vec<f64> = xs.iter().map(|&x| 3.0 / (1.0 + x as f64 / 100.0)).collect();
    let b: Vec<f32> = xs.iter().map(|&x| 1.0 / (1.0 + x as f32 / 300.0)).collect();
    let mut fig = Figure::new(900, 600).grid(2, 2).title("test run");
    fig.panel(0)
        .title("loss")
        .x_label("step")
        .y_log(true)
        .line("total", &xs, &a)
        .line("iou", &xs, &b);
    fig.panel(3).title("mAP").y_range(0.0, 1.0).line_markers(
        "mAP@.5",
        &[100, 500, 1000],
        &[0.2, 0.4, 0.5],
    );
    let (w, h, rgb) = decode(&fig.to_png_bytes().unwrap());
    assert_eq!((w, h), (900, 600));
    assert!(count(&rgb, PALETTE[0]) > 200, "first series colour missing");
    assert!(
        count(&rgb, PALETTE[1]) > 200,
        "second series colour missing"
    );
    assert!(
        count(&rgb, Color::WHITE) > (w * h / 2) as usize,
        "background should be white"
    );
}

#[test]
fn custom_series_colour_is_used() {
    let pink = Color::hex(0xFF00FF);
    let mut fig = Figure::new(400, 300);
    fig.panel(0).series(
        Series::new("x", &[0, 1, 2], &[1, 3, 2])
            .color(pink)
            .width(3.0),
    );
    let (_, _, rgb) = decode(&fig.to_png_bytes().unwrap());
    assert!(count(&rgb, pink) > 50);
    assert_eq!(count(&rgb, PALETTE[0]), 0);
}

#[test]
fn save_png_writes_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.png");
    let mut fig = Figure::new(320, 240);
    fig.panel(0).line("a", &[0.0, 1.0], &[0.0, 1.0]);
    fig.save_png(&path).unwrap();
    let (w, h, _) = decode(&std::fs::read(&path).unwrap());
    assert_eq!((w, h), (320, 240));
    let err = fig
        .save_png(dir.path().join("missing/dir/f.png"))
        .unwrap_err();
    assert!(matches!(err, PlotError::Io { .. }), "{err}");
}

#[test]
fn nan_and_inf_are_skipped_but_the_rest_is_drawn() {
    let xs = [0.0, 1.0, 2.0, 3.0, f64::NAN, 5.0, 6.0, 7.0];
    let ys = [
        1.0,
        f64::NAN,
        2.0,
        f64::INFINITY,
        3.0,
        2.0,
        f64::NEG_INFINITY,
        1.5,
    ];
    let mut fig = Figure::new(500, 300);
    fig.panel(0).line("gappy", &xs, &ys);
    let (_, _, rgb) = decode(&fig.to_png_bytes().unwrap());
    assert!(count(&rgb, PALETTE[0]) > 30);

    // Nothing valid at all: no series pixels, but still a valid image.
    let mut fig = Figure::new(500, 300);
    fig.panel(0)
        .line("nan", &[f64::NAN, 1.0], &[1.0, f64::NAN])
        .line("inf", &[f64::INFINITY], &[f64::INFINITY]);
    fig.panel(0).legend(Legend::Hidden);
    let (_, _, rgb) = decode(&fig.to_png_bytes().unwrap());
    assert_eq!(count(&rgb, PALETTE[0]), 0);
    assert_eq!(count(&rgb, PALETTE[1]), 0);
}

#[test]
fn log_scale_skips_zero_and_negative() {
    let mut fig = Figure::new(500, 300);
    fig.panel(0).y_log(true).legend(Legend::Hidden).line(
        "lr",
        &[0, 1, 2, 3, 4],
        &[0.0, -1.0, 1e-4, 2e-4, 1e-3],
    );
    let (_, _, rgb) = decode(&fig.to_png_bytes().unwrap());
    assert!(count(&rgb, PALETTE[0]) > 20);

    let mut fig = Figure::new(500, 300);
    fig.panel(0)
        .y_log(true)
        .x_log(true)
        .legend(Legend::Hidden)
        .line("neg", &[-1, 0], &[-1.0, 0.0]);
    let (_, _, rgb) = decode(&fig.to_png_bytes().unwrap());
    assert_eq!(count(&rgb, PALETTE[0]), 0);
}

#[test]
fn single_point_and_flat_series_are_visible() {
    let mut fig = Figure::new(500, 300).grid(1, 2);
    fig.panel(0)
        .legend(Legend::Hidden)
        .line("one", &[5], &[0.3]);
    fig.panel(1)
        .legend(Legend::Hidden)
        .line("flat", &[0, 1, 2, 3], &[7.0, 7.0, 7.0, 7.0]);
    let (_, _, rgb) = decode(&fig.to_png_bytes().unwrap());
    // A lone point shows as a dot; a flat line sits inside a padded range.
    assert!(count(&rgb, PALETTE[0]) >= 4);
}

#[test]
fn edge_cases_do_not_panic() {
    let long = "a very long label that goes on and on ".repeat(200);
    let big = [f64::MAX, -f64::MAX, 1e308, -1e308, f64::MIN_POSITIVE, 0.0];
    for (w, h) in [(1, 1), (10, 10), (50, 30), (200, 100), (3000, 200)] {
        let mut fig = Figure::new(w, h).grid(3, 3).title(&long).text_scale(3);
        fig.panel(0)
            .title(&long)
            .x_label(&long)
            .y_label(&long)
            .line(&long, &[1.0; 0], &[1.0; 0]);
        fig.panel(1).line("big", &big, &big).y_log(true);
        fig.panel(2)
            .line("big", &big, &big)
            .x_range(f64::NAN, 1.0)
            .y_range(5.0, -5.0);
        fig.panel(3).line("mismatch", &[1, 2, 3, 4, 5], &[1.0, 2.0]);
        fig.panel(4).x_range(0.0, 1.0).y_range(0.0, 1.0).line(
            "outside",
            &[-10.0, 10.0],
            &[-5.0, 8.0],
        );
        fig.panel(5)
            .x_log(true)
            .y_log(true)
            .x_range(-1.0, 0.0)
            .line("lr", &[1e-12, 1e12], &[1e-300, 1e300]);
        for i in 0..40 {
            fig.panel(6).line(&format!("s{i}"), &[0, 1], &[i, i + 1]);
        }
        fig.panel(7)
            .legend(Legend::BottomLeft)
            .scatter("dots", &[1, 2, 3], &[3, 1, 2]);
        fig.panel(8).series(
            Series::new("w", &[0, 1], &[0, 1])
                .width(f64::NAN)
                .markers(true)
                .line(false),
        );
        fig.panel(10_000).title("way past the grid");
        let bytes = fig.to_png_bytes().unwrap();
        let (dw, dh, _) = decode(&bytes);
        assert_eq!((dw, dh), (w, h));
    }
    let fig = Figure::new(100, 100).grid(0, 0);
    assert!(fig.to_png_bytes().is_ok());
    assert!(matches!(
        Figure::new(0, 100).to_png_bytes(),
        Err(PlotError::InvalidSize { .. })
    ));
    assert!(matches!(
        Figure::new(100, 1 << 20).to_png_bytes(),
        Err(PlotError::InvalidSize { .. })
    ));
}

#[test]
fn bar_chart_png_has_bar_colours() {
    let chart = BarChart::new("rvt-tiny-gen1, ms per window (lower is better)")
        .x_label("ms per window")
        .unit(" ms")
        .group(
            "tiny-gen1",
            &[
                ("burn flex", 99.9),
                ("tract", 88.3),
                ("ort", 27.1),
                ("peer", 24.9),
            ],
        )
        .group(
            "small-gen1",
            &[
                ("burn flex", 171.0),
                ("tract", 149.0),
                ("ort", 45.6),
                ("peer", 41.2),
            ],
        );
    let (w, h, rgb) = decode(&chart.to_png_bytes().unwrap());
    assert_eq!(w, 1000);
    assert!(h > 200 && h < 1000, "height {h}");
    for c in &PALETTE[..4] {
        assert!(count(&rgb, *c) > 100, "bar colour {c:?} missing");
    }
    // Bar length follows the value: "burn flex" (99.9) is longer than "peer" (24.9).
    assert!(count(&rgb, PALETTE[0]) > 3 * count(&rgb, PALETTE[3]));
}

#[test]
fn bar_chart_fixed_size_colours_and_log() {
    let green = Color::hex(0x00FF00);
    let chart = BarChart::new("log")
        .size(640, 360)
        .x_log(true)
        .color("b", green)
        .group("g", &[("a", 1.0), ("b", 1000.0), ("c", 0.0), ("d", -5.0)]);
    let (w, h, rgb) = decode(&chart.to_png_bytes().unwrap());
    assert_eq!((w, h), (640, 360));
    assert!(count(&rgb, green) > 100);
}

#[test]
fn bar_chart_edge_cases_do_not_panic() {
    let long = "benchmark label ".repeat(100);
    let charts = [
        BarChart::new(""),
        BarChart::new(&long).group(&long, &[(long.as_str(), 1.0)]),
        BarChart::new("empty group").group("g", &[] as &[(&str, f64)]),
        BarChart::new("nan").group("g", &[("a", f64::NAN), ("b", f64::INFINITY)]),
        BarChart::new("neg").group("g", &[("a", -3.0), ("b", 2.0)]),
        BarChart::new("all neg").group("g", &[("a", -3.0), ("b", -2.0)]),
        BarChart::new("zeros").group("g", &[("a", 0.0), ("b", 0.0)]),
        BarChart::new("huge").group("g", &[("a", f64::MAX), ("b", -f64::MAX)]),
        BarChart::new("ints").group("g", &[("a", 3u32), ("b", 7u32)]),
        BarChart::new("squeezed")
            .size(300, 40)
            .group("g", &[("a", 1.0), ("b", 2.0), ("c", 3.0)]),
        BarChart::new("tiny").size(5, 5).group("g", &[("a", 1.0)]),
        BarChart::new("big text")
            .text_scale(8)
            .width(200)
            .group("g", &[("a", 1.0)]),
    ];
    for c in &charts {
        let (w, h, _) = decode(&c.to_png_bytes().unwrap());
        assert!(w > 0 && h > 0);
    }
    assert!(BarChart::new("zero").size(0, 10).to_png_bytes().is_err());
    let mut many = BarChart::new("too tall");
    for i in 0..2000 {
        many = many.group(&format!("g{i}"), &[("a", 1.0)]);
    }
    assert!(matches!(
        many.to_png_bytes(),
        Err(PlotError::InvalidSize { .. })
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    #[test]
    fn arbitrary_series_never_panic(
        ys in proptest::collection::vec(proptest::num::f64::ANY, 0..40),
        xs in proptest::collection::vec(proptest::num::f64::ANY, 0..40),
        x_log: bool,
        y_log: bool,
    ) {
        let mut fig = Figure::new(240, 180);
        fig.panel(0).x_log(x_log).y_log(y_log).line("a", &xs, &ys).scatter("b", &ys, &xs);
        let (w, h, _) = decode(&fig.to_png_bytes().unwrap());
        proptest::prop_assert_eq!((w, h), (240, 180));
        let bars: Vec<(String, f64)> = ys.iter().take(8).enumerate().map(|(i, &v)| (format!("b{i}"), v)).collect();
        let chart = BarChart::new("p").x_log(x_log).group("g", &bars);
        proptest::prop_assert!(chart.to_png_bytes().is_ok());
    }
}

/// The demo's charts (examples/demo.rs), built here too so `cargo test` checks them and
/// refreshes the example images in /tmp/prism-plot-examples/.
#[allow(dead_code)]
#[path = "../examples/demo.rs"]
mod demo;

#[test]
fn example_images_are_written() {
    let dir = std::path::Path::new("/tmp/prism-plot-examples");
    std::fs::create_dir_all(dir).unwrap();
    let curves = demo::training_curves().to_png_bytes().unwrap();
    let (w, h, rgb) = decode(&curves);
    assert_eq!((w, h), (1400, 900));
    for c in &PALETTE[..4] {
        assert!(count(&rgb, *c) > 100, "series colour {c:?} missing");
    }
    std::fs::write(dir.join("training_curves.png"), curves).unwrap();
    let bars = demo::bench_bars().to_png_bytes().unwrap();
    decode(&bars);
    std::fs::write(dir.join("bench_bars.png"), bars).unwrap();
}
