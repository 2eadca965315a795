//! The Prometheus text exposition format (version 0.0.4) of a registry.
//!
//! `prometheus-client` encodes OpenMetrics, where a counter's family name drops its
//! `_total`: the `ftpgate_sessions` gauge and the `ftpgate_sessions_total` counter would
//! then be two families of one name, which OpenMetrics parsers reject. In the classic
//! format the counter's family is named with its `_total`, so both are valid side by side;
//! it is also what every Prometheus version and `promtool check metrics` read.

use prometheus_client::registry::Registry;

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut open = String::new();
    prometheus_client::encoding::text::encode_registry(&mut open, registry)?;
    Ok(to_classic(&open))
}

/// Rewrites OpenMetrics text into the classic format: counter families take their
/// `_total` name, `unknown` becomes `untyped`, `# UNIT` and `# EOF` go.
fn to_classic(open: &str) -> String {
    let mut out = String::with_capacity(open.len() + 256);
    let mut help: Option<(&str, &str)> = None;
    for line in open.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, text)) = help.take() {
                push_help(&mut out, name, text);
            }
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), kind),
                "unknown" => (name.to_string(), "untyped"),
                _ => (name.to_string(), kind),
            };
            if let Some((_, text)) = help.take() {
                push_help(&mut out, &name, text);
            }
            out.push_str("# TYPE ");
            out.push_str(&name);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some((name, text)) = help {
        push_help(&mut out, name, text);
    }
    out
}

fn push_help(out: &mut String, name: &str, text: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    out.push_str(text);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::families::{Families, ListenerLabel};

    #[test]
    fn gauge_and_counter_of_one_base_name_are_two_families() {
        let f = Families::default();
        let mut r = Registry::default();
        f.register(&mut r);
        let l = ListenerLabel {
            listener: "public".into(),
        };
        f.sessions.get_or_create(&l).inc();
        f.sessions_total.get_or_create(&l).inc_by(3);
        let text = encode(&r).unwrap();
        assert!(text.contains("# TYPE ftpgate_sessions gauge\n"), "{text}");
        assert!(
            text.contains("# TYPE ftpgate_sessions_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP ftpgate_sessions_total "), "{text}");
        assert!(
            text.contains("ftpgate_sessions_total{listener=\"public\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("ftpgate_sessions{listener=\"public\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("_total_total"), "{text}");
        // Every HELP line is followed by the TYPE line of the same family.
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if let Some(rest) = l.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(
                    lines[i + 1].starts_with(&format!("# TYPE {name} ")),
                    "{l} / {}",
                    lines[i + 1]
                );
            }
        }
    }
}
