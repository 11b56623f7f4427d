//! A tiny PNG chart rasteriser for `eval`'s plots: lines, dots, axes, and
//! labels in a built-in 3×5 pixel font, so plots need no system fonts (CI
//! machines may have none) and no plotting stack.

use std::path::Path;

use anyhow::Context;

pub type Rgb = [u8; 3];

pub const BLUE: Rgb = [31, 119, 180];
pub const ORANGE: Rgb = [255, 127, 14];
pub const GREEN: Rgb = [44, 160, 44];
pub const GREY: Rgb = [120, 120, 120];
pub const RED: Rgb = [214, 39, 40];
const BLACK: Rgb = [0, 0, 0];
const LIGHT: Rgb = [228, 228, 228];

const W: usize = 900;
const H: usize = 600;
const LEFT: usize = 70;
const RIGHT: usize = 20;
const TOP: usize = 40;
const BOTTOM: usize = 50;
/// Font pixels per glyph pixel.
const SCALE: usize = 2;

/// One series: points in data units, drawn as a line and/or dots.
pub struct Series {
    pub label: String,
    pub color: Rgb,
    pub points: Vec<(f64, f64)>,
    pub line: bool,
    pub dots: bool,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Log10 x axis (costs span orders of magnitude).
    pub log_x: bool,
    pub series: Vec<Series>,
}

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if (0..W as i64).contains(&x) && (0..H as i64).contains(&y) {
            let i = (y as usize * W + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn square(&mut self, x: i64, y: i64, r: i64, c: Rgb) {
        for dy in -r..=r {
            for dx in -r..=r {
                self.set(x + dx, y + dy, c);
            }
        }
    }

    fn line(&mut self, a: (i64, i64), b: (i64, i64), r: i64, c: Rgb) {
        let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).max(1);
        for s in 0..=steps {
            let x = a.0 + (b.0 - a.0) * s / steps;
            let y = a.1 + (b.1 - a.1) * s / steps;
            self.square(x, y, r, c);
        }
    }

    fn text(&mut self, x: i64, y: i64, s: &str, c: Rgb) {
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        let px = x + ((k * 4 + col) * SCALE) as i64;
                        let py = y + (row * SCALE) as i64;
                        for d in 0..SCALE as i64 * SCALE as i64 {
                            self.set(px + d % SCALE as i64, py + d / SCALE as i64, c);
                        }
                    }
                }
            }
        }
    }
}

fn text_width(s: &str) -> i64 {
    (s.chars().count() * 4 * SCALE) as i64
}

/// A 3×5 glyph, one byte per row, high bit left. Unknown characters are blank.
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 3, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '(' => [1, 2, 2, 2, 1],
        ')' => [4, 2, 2, 2, 4],
        '/' => [1, 1, 2, 4, 4],
        ':' => [0, 2, 0, 2, 0],
        '%' => [5, 1, 2, 4, 5],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [7, 4, 4, 4, 7],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [7, 4, 5, 5, 7],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 7],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        _ => [0; 5],
    }
}

impl Chart {
    /// Renders the chart to a PNG file.
    pub fn write_png(&self, path: &Path) -> anyhow::Result<()> {
        let mut cv = Canvas {
            px: vec![255; W * H * 3],
        };
        let tx = |x: f64| if self.log_x { x.max(1e-12).log10() } else { x };
        let all: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|&(x, y)| (tx(x), y)))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let (mut x0, mut x1) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
        let (mut y0, mut y1) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
        if all.is_empty() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        let pad = |a: f64, b: f64| ((b - a) * 0.05).max(1e-9);
        let (px_, py_) = (pad(x0, x1), pad(y0, y1));
        (x0, x1, y0, y1) = (x0 - px_, x1 + px_, y0 - py_, y1 + py_);
        let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
        let to_px = |x: f64, y: f64| {
            (
                LEFT as i64 + ((tx(x) - x0) / (x1 - x0) * pw) as i64,
                (H - BOTTOM) as i64 - ((y - y0) / (y1 - y0) * ph) as i64,
            )
        };
        // Grid and tick labels: decades on a log axis, five steps otherwise.
        let xticks: Vec<f64> = if self.log_x {
            // Decades, plus 2x and 5x when the axis spans too few decades to read.
            let steps: &[f64] = if x1 - x0 < 2.0 {
                &[1.0, 2.0, 5.0]
            } else {
                &[1.0]
            };
            (x0.floor() as i64..=x1.ceil() as i64)
                .flat_map(|e| steps.iter().map(move |m| e as f64 + m.log10()))
                .filter(|t| (x0..=x1).contains(t))
                .collect()
        } else {
            (0..=5).map(|i| x0 + (x1 - x0) * i as f64 / 5.0).collect()
        };
        for t in xticks {
            let x = LEFT as i64 + ((t - x0) / (x1 - x0) * pw) as i64;
            cv.line((x, TOP as i64), (x, (H - BOTTOM) as i64), 0, LIGHT);
            let label = if self.log_x {
                let e = t.floor();
                format!("{:.0}E{e:.0}", 10f64.powf(t - e))
            } else {
                format!("{t:.3}")
            };
            cv.text(
                x - text_width(&label) / 2,
                (H - BOTTOM + 8) as i64,
                &label,
                BLACK,
            );
        }
        for i in 0..=5 {
            let t = y0 + (y1 - y0) * i as f64 / 5.0;
            let y = (H - BOTTOM) as i64 - ((t - y0) / (y1 - y0) * ph) as i64;
            cv.line((LEFT as i64, y), ((W - RIGHT) as i64, y), 0, LIGHT);
            let label = format!("{t:.2}");
            cv.text(LEFT as i64 - text_width(&label) - 6, y - 5, &label, BLACK);
        }
        let (l, r, t, b) = (
            LEFT as i64,
            (W - RIGHT) as i64,
            TOP as i64,
            (H - BOTTOM) as i64,
        );
        cv.line((l, b), (r, b), 0, BLACK);
        cv.line((l, t), (l, b), 0, BLACK);
        cv.text(l, 12, &self.title, BLACK);
        cv.text(
            (W as i64 - text_width(&self.x_label)) / 2,
            (H - 22) as i64,
            &self.x_label,
            BLACK,
        );
        cv.text(4, 24, &self.y_label, BLACK);
        for (k, s) in self.series.iter().enumerate() {
            let pts: Vec<(i64, i64)> = s.points.iter().map(|&(x, y)| to_px(x, y)).collect();
            if s.line {
                for w in pts.windows(2) {
                    cv.line(w[0], w[1], 1, s.color);
                }
            }
            if s.dots {
                for &p in &pts {
                    cv.square(p.0, p.1, 3, s.color);
                }
            }
            // Legend, top right inside the plot.
            let ly = t + 8 + 16 * k as i64;
            let lx = r - 260;
            cv.square(lx, ly + 4, 4, s.color);
            cv.text(lx + 12, ly, &s.label, BLACK);
        }
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()?.write_image_data(&cv.px)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_decodable_png_with_the_series_colour() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c.png");
        Chart {
            title: "T".into(),
            x_label: "COST".into(),
            y_label: "Q".into(),
            log_x: true,
            series: vec![Series {
                label: "ROUTER".into(),
                color: BLUE,
                points: vec![(1e-5, 0.2), (1e-3, 0.8)],
                line: true,
                dots: true,
            }],
        }
        .write_png(&path)
        .unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (W as u32, H as u32));
        assert!(buf.chunks_exact(3).any(|p| p == BLUE));
    }
}
