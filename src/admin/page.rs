//! `GET /`: the dashboard page. The server renders the current [`Stats`] into it, so the page
//! is a complete snapshot without JavaScript; its script (in `dashboard.html`, which renders
//! the same markup) then polls `/stats` every second. No external script, font or style.

use super::stats::Stats;
use crate::upstream::snapshot::{BackendSnapshot, ClusterSnapshot};
use crate::window::Summary;
use std::fmt::Write;

/// The page around the rendered body: styles, the polling script.
const TEMPLATE: &str = include_str!("dashboard.html");

/// The whole page for `stats`.
pub fn page(stats: &Stats) -> String {
    TEMPLATE.replacen("{{BODY}}", &body(stats), 1)
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number as the page shows it: at most one decimal, none when whole.
fn num(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

fn ms(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), |v| format!("{} ms", num(v)))
}

fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A 120×24 polyline of requests per second over the last minute.
fn sparkline(per_second: &[u32]) -> String {
    let max = per_second.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = 120.0 / (per_second.len().max(2) - 1) as f64;
    let points: Vec<String> = per_second
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            format!(
                "{},{}",
                num(i as f64 * step),
                num(23.0 - 22.0 * n as f64 / max)
            )
        })
        .collect();
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 120 24\" width=\"120\" height=\"24\" aria-hidden=\"true\"><polyline points=\"{}\"/></svg>",
        points.join(" ")
    )
}

/// A probe error can be long (pingora's error chain): the page shows its start, the whole in
/// the tooltip.
fn short(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

fn fact(out: &mut String, term: &str, value: &str) {
    let _ = write!(out, "<div><dt>{term}</dt><dd>{value}</dd></div>");
}

fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"badge {class}\">{}</span>", esc(text))
}

fn body(stats: &Stats) -> String {
    let mut out = String::new();
    let g = &stats.gateway;
    let _ = write!(
        out,
        "<header><h1>headway <small>{}</small></h1><dl class=\"facts\" id=\"gateway\">",
        esc(g.version)
    );
    fact(&mut out, "uptime", &duration(g.uptime_seconds));
    let conf = g.conf.as_ref().map_or_else(
        || "–".to_owned(),
        |c| {
            format!(
                "{} <small>loaded {}</small>",
                esc(&c.hash),
                esc(&c.loaded_at)
            )
        },
    );
    fact(&mut out, "conf", &conf);
    let state = if g.draining {
        badge("bad", "draining")
    } else {
        badge("ok", "serving")
    };
    fact(&mut out, "state", &state);
    fact(&mut out, "connections", &g.connections.to_string());
    fact(
        &mut out,
        "parked",
        &format!(
            "{} <small>of {}</small>",
            g.parked_connections, g.parking_budget
        ),
    );
    fact(&mut out, "updated", &esc(&g.now));
    out.push_str("</dl></header>");
    routes(&mut out, stats);
    store_errors(&mut out, stats);
    splits(&mut out, stats);
    certificates(&mut out, stats);
    for c in &stats.clusters {
        cluster(&mut out, c);
    }
    out
}

/// Requests rate limits could not count in Redis, when there were any: their `failure_mode`
/// decided.
fn store_errors(out: &mut String, stats: &Stats) {
    if stats.rate_limit_store_errors.is_empty() {
        return;
    }
    out.push_str("<section id=\"store-errors\"><h2>Rate limit store <small>fallbacks since start</small></h2><div class=\"scroll\"><table><thead><tr><th>route</th><th>reason</th><th>requests</th></tr></thead><tbody>");
    for e in &stats.rate_limit_store_errors {
        let _ = write!(
            out,
            "<tr data-store-route=\"{}\"><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&e.route),
            esc(&e.route),
            badge("warn", &e.reason),
            e.count
        );
    }
    out.push_str("</tbody></table></div></section>");
}

/// The certificates in use, when there are any: who uses each, its names, when it expires (a
/// warning badge under 14 days, a bad one once expired).
fn certificates(out: &mut String, stats: &Stats) {
    if stats.certificates.is_empty() {
        return;
    }
    out.push_str("<section id=\"certificates\"><h2>Certificates</h2><div class=\"scroll\"><table><thead><tr><th>used by</th><th>names</th><th>subject</th><th>serial</th><th>expires</th></tr></thead><tbody>");
    for c in &stats.certificates {
        let class = match c.days_left {
            ..0 => "bad",
            0..14 => "warn",
            _ => "ok",
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td></tr>",
            esc(&c.used_by),
            esc(&c.names.join(" ")),
            esc(&c.subject),
            esc(&c.serial),
            esc(&c.not_after),
            badge(class, &format!("{} days left", c.days_left))
        );
    }
    out.push_str("</tbody></table></div></section>");
}

fn window_cells(out: &mut String, w: &Summary) {
    let _ = write!(
        out,
        "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}%</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td>",
        num(w.requests_per_second),
        w.errors,
        num(w.error_rate * 100.0),
        ms(w.p50_ms),
        ms(w.p99_ms),
        sparkline(&w.per_second)
    );
}

fn routes(out: &mut String, stats: &Stats) {
    out.push_str("<section id=\"routes\"><h2>Routes <small>last minute</small></h2><div class=\"scroll\"><table><thead><tr><th>route</th><th>cluster</th><th>req/s</th><th>errors</th><th>error rate</th><th>p50</th><th>p99</th><th>requests/s, 60 s</th></tr></thead><tbody>");
    for r in &stats.routes {
        // Requests that matched no route are no route of the conf: said in words.
        let (route, cluster) = if r.route == crate::metrics::NO_ROUTE {
            ("<em>no route matched</em>".to_owned(), "– (404)".to_owned())
        } else {
            (esc(&r.route), esc(&r.cluster))
        };
        let _ = write!(
            out,
            "<tr data-route=\"{}\"><td>{route}</td><td>{cluster}</td>",
            esc(&r.route),
        );
        window_cells(out, &r.last_minute);
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></section>");
}

/// Each split route's clusters: the weight configured and the share picked in the last minute.
fn splits(out: &mut String, stats: &Stats) {
    if stats.splits.is_empty() {
        return;
    }
    out.push_str("<section id=\"splits\"><h2>Splits <small>configured and last minute</small></h2><div class=\"scroll\"><table><thead><tr><th>route</th><th>cluster</th><th>weight</th><th>configured</th><th>last minute</th><th>requests</th></tr></thead><tbody>");
    for s in &stats.splits {
        for c in &s.clusters {
            let realised = c
                .realised_percent
                .map_or_else(|| "–".to_owned(), |p| format!("{}%", num(p)));
            let _ = write!(
                out,
                "<tr data-split=\"{}\"><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}%</td><td class=\"n\">{realised}</td><td class=\"n\">{}</td></tr>",
                esc(&s.route),
                esc(&s.route),
                esc(&c.cluster),
                c.weight,
                num(c.configured_percent),
                c.requests_last_minute
            );
        }
    }
    out.push_str("</tbody></table></div></section>");
}

/// The backend's health as a word (also its `data-health`) and the badge's details.
fn health(b: &BackendSnapshot) -> (&'static str, String) {
    if b.draining {
        ("draining", "left DNS, finishing its requests".to_owned())
    } else if let Some(s) = b.ejected_for_seconds {
        ("ejected", format!("back in {}s", num(s)))
    } else if b.healthy {
        (
            "healthy",
            b.since
                .clone()
                .map_or_else(String::new, |s| format!("since {s}")),
        )
    } else if !b.probed {
        ("pending", "waiting for its first probe".to_owned())
    } else {
        ("unhealthy", b.last_error.clone().unwrap_or_default())
    }
}

fn cluster(out: &mut String, c: &ClusterSnapshot) {
    let name = esc(&c.name);
    let count = c.backends.iter().filter(|b| !b.draining).count();
    let _ = write!(
        out,
        "<section class=\"cluster\" data-cluster=\"{name}\"><h2>{name} <small>{}:{} · {}</small> {}{}</h2><dl class=\"facts\">",
        esc(&c.address),
        c.port,
        c.lb_policy,
        badge(
            if c.healthy_backends == 0 { "bad" } else { "ok" },
            &format!("{}/{count} healthy", c.healthy_backends)
        ),
        if c.panic_mode { badge("warn", "panic mode") } else { String::new() }
    );
    if let Some(dns) = &c.dns {
        let outcome = serde_json::to_value(dns.last_outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let stale = if dns.stale {
            badge("bad", "stale")
        } else {
            String::new()
        };
        fact(out, "dns", &format!("{} {stale}", esc(&outcome)));
        let records: Vec<String> = match &dns.srv_records {
            Some(srv) => srv.iter().map(|r| esc(r)).collect(),
            None => dns.last_answer.iter().map(|a| a.to_string()).collect(),
        };
        fact(out, "records", &records.join("<br>"));
        fact(
            out,
            "ttl",
            &dns.last_ttl_seconds
                .map_or("–".to_owned(), |t| format!("{t}s")),
        );
        let error = dns
            .last_error
            .as_ref()
            .map_or("–".to_owned(), |(_, e)| esc(e));
        fact(out, "last error", &error);
        fact(
            out,
            "next refresh",
            &dns.next_refresh_in_seconds
                .map_or("–".to_owned(), |s| format!("in {}s", num(s))),
        );
    }
    if let Some(hc) = &c.health_check {
        fact(out, "health check", &esc(hc));
    }
    out.push_str("</dl><div class=\"scroll\"><table class=\"backends\"><thead><tr><th>backend</th><th>health</th><th>in flight</th><th>req/s</th><th>errors</th><th>requests/s, 60 s</th></tr></thead><tbody>");
    for b in &c.backends {
        let (word, detail) = health(b);
        let class = match word {
            "healthy" => "ok",
            "pending" | "draining" => "warn",
            _ => "bad",
        };
        let _ = write!(
            out,
            "<tr data-backend=\"{addr}\" data-health=\"{word}\"><td>{addr}{srv}</td><td class=\"h\">{} <small title=\"{}\">{}</small></td><td class=\"n\">{}</td>",
            badge(class, word),
            esc(&detail),
            esc(&short(&detail)),
            b.in_flight,
            addr = esc(&b.address),
            srv = b.srv_record.as_ref().map_or(String::new(), |r| format!("<br><small>{}</small>", esc(r))),
        );
        match &b.last_minute {
            Some(w) => {
                let _ = write!(
                    out,
                    "<td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td>",
                    num(w.requests_per_second),
                    w.errors,
                    sparkline(&w.per_second)
                );
            }
            None => out.push_str("<td></td><td></td><td></td>"),
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_numbers_are_short() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(num(2.0), "2");
        assert_eq!(num(0.25), "0.3");
        assert_eq!(duration(3725), "1h 2m");
        assert!(sparkline(&[0, 5, 10]).contains("points=\"0,23 60,12 120,1\""));
    }
}
