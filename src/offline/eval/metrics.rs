//! Summary metrics of a router's quality–cost trade-off.
//!
//! * The **frontier** of a set of (cost, quality) points is the upper concave
//!   envelope of the points, made non-decreasing: every point on it is reachable
//!   by sending each prompt to one of two settings at random, and a more
//!   expensive mix never has to be worse than a cheaper one. Below its cheapest
//!   point nothing is reachable (quality 0); above its best point it stays flat.
//! * The **frontier area** (RouterBench's AIQ, Hu et al. 2024, "RouterBench: A
//!   Benchmark for Multi-LLM Routing System", §4) is the integral of the
//!   frontier over a fixed cost range divided by that range, so it is a mean
//!   quality over budgets; comparing two sets of points on one range says whose
//!   trade-off is better overall.
//! * **APGR** and **CPT(x%)** (Ong et al. 2024, "RouteLLM: Learning to Route
//!   LLMs with Preference Data", §5.1) for a strong and a weak model: the
//!   performance gap recovered, PGR = (q − q_weak) / (q_strong − q_weak), as a
//!   function of the share of calls sent to the strong model; APGR is its
//!   average over shares 0..1 and CPT(x%) the smallest share of strong calls
//!   that recovers x% of the gap. Both are computed on the frontier of
//!   (share, PGR) points with the two single models as its ends.

/// The non-decreasing upper concave envelope of `points` (x, y), sorted by x.
pub fn frontier(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    // Pareto: a point no better than a cheaper one is never on the frontier.
    let mut pareto: Vec<(f64, f64)> = Vec::new();
    for p in pts {
        if pareto.last().is_none_or(|l| p.1 > l.1) {
            pareto.push(p);
        }
    }
    // Upper hull (monotone chain): drop a middle point on or under the chord.
    let mut hull: Vec<(f64, f64)> = Vec::new();
    for p in pareto {
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            let cross = (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
            if cross >= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
    hull
}

/// The frontier's value at `x` (0 below its first point, flat after its last).
pub fn value_at(hull: &[(f64, f64)], x: f64) -> f64 {
    match hull.first() {
        None => 0.0,
        Some(f) if x < f.0 => 0.0,
        _ => {
            for w in hull.windows(2) {
                if x <= w[1].0 {
                    let t = (x - w[0].0) / (w[1].0 - w[0].0);
                    return w[0].1 + t * (w[1].1 - w[0].1);
                }
            }
            hull.last().map_or(0.0, |l| l.1)
        }
    }
}

/// The mean of the frontier over [lo, hi] (exact: it is piecewise linear).
pub fn area(hull: &[(f64, f64)], lo: f64, hi: f64) -> f64 {
    if hull.is_empty() || hi <= lo {
        return 0.0;
    }
    // Breakpoints inside the range; the jump at the first point is handled by
    // starting the integral there.
    let start = lo.max(hull[0].0);
    if start >= hi {
        return 0.0;
    }
    let mut xs = vec![start];
    xs.extend(hull.iter().map(|p| p.0).filter(|&x| x > start && x < hi));
    xs.push(hi);
    let mut total = 0.0;
    for w in xs.windows(2) {
        let (a, b) = (w[0], w[1]);
        let ya = if a == hull[0].0 {
            hull[0].1
        } else {
            value_at(hull, a)
        };
        total += (b - a) * (ya + value_at(hull, b)) / 2.0;
    }
    total / (hi - lo)
}

/// The smallest x at which the frontier reaches `y`, if it does.
pub fn x_to_reach(hull: &[(f64, f64)], y: f64) -> Option<f64> {
    let first = hull.first()?;
    if y <= first.1 {
        return Some(first.0);
    }
    hull.windows(2).find(|w| y <= w[1].1).map(|w| {
        let t = (y - w[0].1) / (w[1].1 - w[0].1);
        w[0].0 + t * (w[1].0 - w[0].0)
    })
}

/// RouteLLM's APGR and CPT(50%), CPT(80%) (as shares of strong calls in [0, 1]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TwoModel {
    pub strong: String,
    pub weak: String,
    pub apgr: f64,
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
}

/// `points` are (share of strong calls, quality) of the router's settings.
pub fn two_model(
    strong: (&str, f64),
    weak: (&str, f64),
    points: &[(f64, f64)],
) -> Option<TwoModel> {
    let gap = strong.1 - weak.1;
    if gap <= 0.0 {
        return None;
    }
    let mut pgr: Vec<(f64, f64)> = points
        .iter()
        .map(|&(s, q)| (s, (q - weak.1) / gap))
        .collect();
    pgr.extend([(0.0, 0.0), (1.0, 1.0)]);
    let hull = frontier(&pgr);
    Some(TwoModel {
        strong: strong.0.to_owned(),
        weak: weak.0.to_owned(),
        apgr: area(&hull, 0.0, 1.0),
        cpt50: x_to_reach(&hull, 0.5),
        cpt80: x_to_reach(&hull, 0.8),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_drops_dominated_and_non_concave_points() {
        let pts = [(1.0, 0.5), (2.0, 0.55), (3.0, 0.9), (4.0, 0.8), (0.5, 0.2)];
        // (2, 0.55) lies under the chord from (1, 0.5) to (3, 0.9); (4, 0.8) is dominated.
        assert_eq!(frontier(&pts), vec![(0.5, 0.2), (1.0, 0.5), (3.0, 0.9)]);
    }

    #[test]
    fn area_is_the_mean_of_the_piecewise_linear_frontier() {
        let hull = frontier(&[(0.0, 0.0), (1.0, 1.0)]);
        assert!((area(&hull, 0.0, 1.0) - 0.5).abs() < 1e-12);
        // Flat after the last point: half the range at 0.5 mean, half at 1.
        assert!((area(&hull, 0.0, 2.0) - 0.75).abs() < 1e-12);
        // Nothing reachable below the first point.
        let late = frontier(&[(1.0, 1.0)]);
        assert!((area(&late, 0.0, 2.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn reach_interpolates_on_the_frontier() {
        let hull = frontier(&[(0.0, 0.2), (1.0, 0.6), (3.0, 1.0)]);
        assert_eq!(x_to_reach(&hull, 0.1), Some(0.0));
        assert!((x_to_reach(&hull, 0.4).unwrap() - 0.5).abs() < 1e-12);
        assert!((x_to_reach(&hull, 0.8).unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(x_to_reach(&hull, 1.1), None);
    }

    #[test]
    fn random_routing_has_apgr_one_half_and_a_perfect_router_more() {
        // Random mixes lie on the diagonal: PGR = share.
        let random: Vec<(f64, f64)> = (0..=10)
            .map(|i| (i as f64 / 10.0, 0.4 + 0.04 * i as f64))
            .collect();
        let t = two_model(("s", 0.8), ("w", 0.4), &random).unwrap();
        assert!((t.apgr - 0.5).abs() < 1e-9);
        assert!((t.cpt50.unwrap() - 0.5).abs() < 1e-9);
        assert!((t.cpt80.unwrap() - 0.8).abs() < 1e-9);
        // A router that recovers the whole gap with 40% strong calls.
        let good = [(0.4, 0.8)];
        let t = two_model(("s", 0.8), ("w", 0.4), &good).unwrap();
        assert!((t.apgr - (0.4 * 0.5 + 0.6)).abs() < 1e-9);
        assert!((t.cpt50.unwrap() - 0.2).abs() < 1e-9);
        assert!(two_model(("s", 0.4), ("w", 0.4), &good).is_none());
    }
}
