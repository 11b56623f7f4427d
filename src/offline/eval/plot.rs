//! `eval`'s PNG charts: lines and dots over a linear or log x axis, drawn
//! by plotters onto an RGB buffer and encoded with `png`. Text is set in
//! DejaVu Sans embedded from the `dejavu` crate, so a plot needs no system
//! fonts (CI machines may have none).

use std::path::Path;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

pub type Rgb = [u8; 3];

pub const BLUE: Rgb = [31, 119, 180];
pub const ORANGE: Rgb = [255, 127, 14];
pub const GREEN: Rgb = [44, 160, 44];
pub const GREY: Rgb = [120, 120, 120];
pub const RED: Rgb = [214, 39, 40];

const W: u32 = 900;
const H: u32 = 600;
const FONT: &str = "sans-serif";

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

impl Chart {
    /// Renders the chart to a PNG file.
    pub fn write_png(&self, path: &Path) -> anyhow::Result<()> {
        // Registering again replaces the same font: cheap, and no global
        // "already done" state to keep.
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| anyhow::anyhow!("the embedded DejaVu Sans font did not parse"))?;
        let mut px = vec![255u8; (W * H * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut px, (W, H)).into_drawing_area();
            self.draw(&root)?;
            root.present()?;
        }
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W, H);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()?.write_image_data(&px)?;
        Ok(())
    }

    fn draw(&self, root: &DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()> {
        root.fill(&WHITE)?;
        let (xs, ys) = self.bounds();
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.title, (FONT, 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64);
        if self.log_x {
            let chart = builder.build_cartesian_2d(xs.log_scale(), ys)?;
            self.plot(chart, &|v: &f64| format!("{v:.0e}"))
        } else {
            let chart = builder.build_cartesian_2d(xs, ys)?;
            self.plot(chart, &|v: &f64| format!("{v:.0}"))
        }
    }

    /// The mesh, the series and the legend, on either kind of x axis.
    fn plot<'a, X>(
        &self,
        mut chart: ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, RangedCoordf64>>,
        x_format: &dyn Fn(&f64) -> String,
    ) -> anyhow::Result<()>
    where
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(x_format)
            .y_label_formatter(&|v| format!("{v:.2}"))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        for s in &self.series {
            let color = RGBColor(s.color[0], s.color[1], s.color[2]);
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| x.is_finite() && y.is_finite() && (!self.log_x || x > 0.0))
                .collect();
            // Dots first, so the labelled (last-drawn) series is the line
            // when there is one: one legend entry per series.
            if s.dots && s.line {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            }
            let legend = if s.line {
                chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?
            } else {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?
            };
            legend.label(s.label.as_str()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
            });
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        Ok(())
    }

    /// The data's extent with a margin: 5% of the span on a linear axis, a
    /// factor of 1.5 on a log axis.
    fn bounds(&self) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
        let pts = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter().copied())
                .filter(|&(x, y)| x.is_finite() && y.is_finite() && (!self.log_x || x > 0.0))
        };
        let span = |it: &mut dyn Iterator<Item = f64>| {
            it.fold(None, |acc: Option<(f64, f64)>, v| {
                Some(acc.map_or((v, v), |(a, b)| (a.min(v), b.max(v))))
            })
        };
        let pad = |(a, b): (f64, f64)| {
            let m = ((b - a) * 0.05).max(1e-6);
            (a - m)..(b + m)
        };
        let ys = pad(span(&mut pts().map(|p| p.1)).unwrap_or((0.0, 1.0)));
        let xs = match span(&mut pts().map(|p| p.0)) {
            Some((a, b)) if self.log_x => (a / 1.5)..(b * 1.5),
            Some(x) => pad(x),
            None if self.log_x => 1e-6..1.0,
            None => 0.0..1.0,
        };
        (xs, ys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(path: &Path) -> (png::OutputInfo, Vec<u8>) {
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info, buf)
    }

    #[test]
    fn writes_a_decodable_png_with_the_series_colour_and_text() {
        let tmp = tempfile::tempdir().unwrap();
        for log_x in [true, false] {
            let path = tmp.path().join(format!("c-{log_x}.png"));
            Chart {
                title: "Quality vs cost".into(),
                x_label: "Cost".into(),
                y_label: "Quality".into(),
                log_x,
                series: vec![Series {
                    label: "Router".into(),
                    color: BLUE,
                    points: vec![(1e-5, 0.2), (1e-3, 0.8), (f64::NAN, 0.5)],
                    line: true,
                    dots: true,
                }],
            }
            .write_png(&path)
            .unwrap();
            let (info, buf) = decode(&path);
            assert_eq!((info.width, info.height), (W, H));
            assert!(buf.chunks_exact(3).any(|p| p == BLUE));
            // Black pixels are the axes and the glyphs of the labels.
            let dark = buf
                .chunks_exact(3)
                .filter(|p| p.iter().all(|&c| c < 60))
                .count();
            assert!(dark > 500, "{dark} dark pixels: no text drawn?");
        }
    }

    #[test]
    fn an_empty_chart_still_renders() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("empty.png");
        let chart = Chart {
            title: "Nothing".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x: true,
            series: vec![],
        };
        chart.write_png(&path).unwrap();
        assert_eq!(decode(&path).0.width, W);
    }
}
