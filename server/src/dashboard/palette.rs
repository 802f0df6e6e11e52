//! A check of the stylesheet's state colours: the pairs an operator must tell
//! apart stay apart for the three kinds of colour blindness, and white badge
//! text stays readable on each (WCAG AA, 4.5:1).
//!
//! Colour blindness is simulated with Machado, Oliveira and Fernandes (2009)
//! at full severity in linear sRGB; "apart" is a CIE76 distance in CIELAB of
//! at least 20 (about where two swatches read as different colours, not
//! shades of one).

use std::collections::BTreeMap;

const CSS: &str = include_str!("../../static/dashboard.css");

type Matrix = [[f64; 3]; 3];
/// A kind of colour blindness by name, and its simulation.
type Kinds<'a> = &'a [(&'a str, &'a Matrix)];

const PROTAN: Matrix = [
    [0.152286, 1.052583, -0.204868],
    [0.114503, 0.786281, 0.099216],
    [-0.003882, -0.048116, 1.051998],
];
const DEUTAN: Matrix = [
    [0.367322, 0.860646, -0.227968],
    [0.280085, 0.672501, 0.047413],
    [-0.011820, 0.042940, 0.968881],
];
const TRITAN: Matrix = [
    [1.255528, -0.076749, -0.178779],
    [-0.078411, 0.930809, 0.147602],
    [0.004733, 0.691367, 0.303900],
];

/// The `--name: #rrggbb` custom properties of the stylesheet's `:root`.
fn palette() -> BTreeMap<String, [f64; 3]> {
    let root = CSS
        .split_once(":root {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(root, _)| root)
        .expect("the stylesheet has a :root block");
    root.split(';')
        .filter_map(|decl| {
            let (name, value) = decl.trim().rsplit_once(':')?;
            let name = name.trim().rsplit(char::is_whitespace).next()?;
            let hex = value.trim().strip_prefix('#')?;
            let channel = |i: usize| {
                u8::from_str_radix(hex.get(i..i + 2)?, 16)
                    .ok()
                    .map(|c| linear(f64::from(c) / 255.0))
            };
            Some((
                name.trim_start_matches("--").to_owned(),
                [channel(0)?, channel(2)?, channel(4)?],
            ))
        })
        .collect()
}

fn linear(c: f64) -> f64 {
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

fn simulate(m: &Matrix, rgb: [f64; 3]) -> [f64; 3] {
    m.map(|row| (row[0] * rgb[0] + row[1] * rgb[1] + row[2] * rgb[2]).clamp(0.0, 1.0))
}

fn lab([r, g, b]: [f64; 3]) -> [f64; 3] {
    let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
    let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
    let f = |t: f64| {
        if t > 0.008856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

fn distance(a: [f64; 3], b: [f64; 3]) -> f64 {
    let (a, b) = (lab(a), lab(b));
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

fn contrast_with_white(rgb: [f64; 3]) -> f64 {
    let luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
    1.05 / (luminance + 0.05)
}

#[test]
fn states_an_operator_must_tell_apart_stay_apart_for_colour_blind_eyes() {
    let colours = palette();
    let colour = |name: &str| colours.get(name).copied().expect(name);
    let pairs: [(&str, &str, Kinds); 6] = [
        (
            "stale",
            "changed",
            &[
                ("protan", &PROTAN),
                ("deutan", &DEUTAN),
                ("tritan", &TRITAN),
            ],
        ),
        (
            "failed",
            "unchanged",
            &[
                ("protan", &PROTAN),
                ("deutan", &DEUTAN),
                ("tritan", &TRITAN),
            ],
        ),
        (
            "failed",
            "changed",
            &[
                ("protan", &PROTAN),
                ("deutan", &DEUTAN),
                ("tritan", &TRITAN),
            ],
        ),
        (
            "stale",
            "unchanged",
            &[
                ("protan", &PROTAN),
                ("deutan", &DEUTAN),
                ("tritan", &TRITAN),
            ],
        ),
        (
            "unresponsive",
            "failed",
            &[
                ("protan", &PROTAN),
                ("deutan", &DEUTAN),
                ("tritan", &TRITAN),
            ],
        ),
        // Tritanopia (about 1 in 10,000) is left out for this pair: blue
        // and green meet there; the badges' words still tell them apart.
        (
            "changed",
            "unchanged",
            &[("protan", &PROTAN), ("deutan", &DEUTAN)],
        ),
    ];
    for (a, b, kinds) in pairs {
        assert!(distance(colour(a), colour(b)) >= 20.0, "{a} and {b}");
        for (kind, m) in kinds {
            let d = distance(simulate(m, colour(a)), simulate(m, colour(b)));
            assert!(d >= 20.0, "{a} and {b} are {d:.1} apart for {kind}");
        }
    }
}

#[test]
fn white_badge_text_is_readable_on_every_state_colour() {
    let colours = palette();
    for name in [
        "unchanged",
        "changed",
        "failed",
        "noop",
        "unresponsive",
        "never",
        "stale",
        "corrective",
    ] {
        let ratio = contrast_with_white(colours[name]);
        assert!(ratio >= 4.5, "white on --{name} is {ratio:.2}:1");
    }
}
