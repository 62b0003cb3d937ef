//! `headless-dns [--listen IP:PORT] [--ttl SECS] [--zone-file PATH] [--stats-file PATH]
//! NAME=IP[,IP...]...`: serves
//! records as cluster DNS serves headless services, until Ctrl-C or SIGTERM. For poking at by
//! hand: `dig @127.0.0.1 -p 15353 service1.default.svc.cluster.local`.
//!
//! Defaults: `--listen 127.0.0.1:15353`, `--ttl 5` (CoreDNS's default for cluster names).
//! `--zone-file PATH`: more records, one `NAME=IP[,IP...]` per line, read again whenever the file
//! changes (see `zone_file.rs`); its names override the same names given as arguments.
//! `--stats-file PATH`: every second, a line `UNIX_SECONDS QUERIES TCP_QUERIES PEAK_PER_10MS`
//! appended (totals since start; the most queries within one 10 ms in that second), for benches.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use headless_dns::{DnsServer, Zone};

mod zone_file;

const USAGE: &str =
    "usage: headless-dns [--listen IP:PORT] [--ttl SECS] [--zone-file PATH] [--stats-file PATH] NAME=IP[,IP...]...";

#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    ttl: u32,
    zone_file: Option<PathBuf>,
    stats_file: Option<PathBuf>,
    services: Vec<(String, Vec<Ipv4Addr>)>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 15353)),
        ttl: 5,
        zone_file: None,
        stats_file: None,
        services: Vec::new(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().ok_or("--listen needs IP:PORT")?;
                parsed.listen = value
                    .parse()
                    .map_err(|_| format!("--listen {value}: not an IP:PORT address"))?;
            }
            "--ttl" => {
                let value = args.next().ok_or("--ttl needs a number of seconds")?;
                parsed.ttl = value
                    .parse()
                    .map_err(|_| format!("--ttl {value}: not a number of seconds"))?;
            }
            "--zone-file" => {
                let value = args.next().ok_or("--zone-file needs a PATH")?;
                parsed.zone_file = Some(PathBuf::from(value));
            }
            "--stats-file" => {
                let value = args.next().ok_or("--stats-file needs a PATH")?;
                parsed.stats_file = Some(PathBuf::from(value));
            }
            "-h" | "--help" => return Err(String::new()),
            record => parsed.services.push(zone_file::parse_record(record)?),
        }
    }
    Ok(parsed)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("headless-dns: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let zone = Zone::new();
    zone.set_ttl(args.ttl);
    for (name, ips) in &args.services {
        zone.set_headless_service(name, ips.iter().copied());
    }
    let mut loaded = None;
    if let Some(path) = &args.zone_file {
        match zone_file::load(&zone, path) {
            Ok(file) => loaded = Some((path.clone(), file)),
            Err(e) => {
                eprintln!("headless-dns: --zone-file {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let watch_zone = zone.clone();
    let stats = args
        .stats_file
        .clone()
        .map(|path| tokio::spawn(write_stats(zone.clone(), path)));
    let server = match DnsServer::bind(args.listen, zone).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!(
                "headless-dns: cannot listen on {} (UDP+TCP): {e}",
                args.listen
            );
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "headless-dns: answering on {} (UDP+TCP), TTL {}s, {} name(s)",
        server.addr(),
        args.ttl,
        args.services.len()
    );
    let watcher = loaded.map(|(path, file)| tokio::spawn(zone_file::watch(watch_zone, path, file)));
    wait_for_stop_signal().await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    if let Some(stats) = stats {
        stats.abort();
    }
    server.stop().await;
    ExitCode::SUCCESS
}

/// Appends the query counters to `path` every second (see the module doc).
async fn write_stats(zone: Zone, path: PathBuf) {
    use std::io::Write as _;
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        every.tick().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let line = format!(
            "{now} {} {} {}\n",
            zone.queries(),
            zone.tcp_queries(),
            zone.take_peak_per_10ms()
        );
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!("headless-dns: --stats-file {}: {e}", path.display());
            return;
        }
    }
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_records_and_options() {
        let parsed = args(&["--ttl", "3", "a.test=10.0.0.1,10.0.0.2", "empty.test="]).unwrap();
        assert_eq!(parsed.ttl, 3);
        assert_eq!(parsed.listen.port(), 15353);
        assert_eq!(parsed.services[0].1.len(), 2);
        assert!(parsed.services[1].1.is_empty());
        assert!(args(&["a.test=10.0.0.x"]).unwrap_err().contains("10.0.0.x"));
        assert!(args(&["--listen", "nowhere"]).is_err());
        let parsed = args(&["--zone-file", "/tmp/zone", "a.test=10.0.0.1"]).unwrap();
        assert_eq!(parsed.zone_file, Some(PathBuf::from("/tmp/zone")));
        assert_eq!(parsed.services.len(), 1);
        assert!(args(&["--zone-file"]).is_err());
    }
}
