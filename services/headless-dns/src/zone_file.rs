//! `--zone-file PATH`: records read from a file and read again whenever it changes, so that a
//! script (bench/chaos.sh) can change what the server answers while it runs.
//!
//! The file has one `NAME=IP[,IP...]` per line, as the command line takes them; blank lines and
//! lines starting with `#` are ignored. A name with no address, or absent from the file, gets
//! NXDOMAIN, as a headless service with no ready pod does. Write the file atomically (a temporary
//! file renamed over it) so that the server never reads half of it; a file that cannot be read or
//! parsed is reported and the records already served are kept.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use headless_dns::Zone;

/// How often the file is looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The names and addresses of a zone file, in file order.
pub type Records = Vec<(String, Vec<Ipv4Addr>)>;

/// `NAME=IP[,IP...]` (an empty list is allowed): the form of the command line and of each line.
pub fn parse_record(record: &str) -> Result<(String, Vec<Ipv4Addr>), String> {
    let (name, ips) = record
        .split_once('=')
        .ok_or_else(|| format!("{record}: expected NAME=IP[,IP...]"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("{record}: no name before '='"));
    }
    let ips = ips
        .split(',')
        .map(str::trim)
        .filter(|ip| !ip.is_empty())
        .map(|ip| {
            ip.parse()
                .map_err(|_| format!("{record}: {ip} is not an IPv4 address"))
        })
        .collect::<Result<Vec<Ipv4Addr>, String>>()?;
    Ok((name.to_owned(), ips))
}

/// Parses a whole zone file. Any bad line makes the whole file bad (the caller keeps the records
/// it has), and so does a name given twice (names are compared as the zone compares them).
pub fn parse(text: &str) -> Result<Records, String> {
    let mut records = Records::new();
    let mut seen = HashSet::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, ips) = parse_record(line).map_err(|e| format!("line {}: {e}", index + 1))?;
        if !seen.insert(normalize(&name)) {
            return Err(format!("line {}: {name} is given twice", index + 1));
        }
        records.push((name, ips));
    }
    Ok(records)
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Makes `zone` answer `records` for the names the file has, and NXDOMAIN for the names an
/// earlier version of the file had and this one has not. Returns the names now managed.
pub fn apply(zone: &Zone, previous: &[String], records: &Records) -> Vec<String> {
    let now: HashSet<String> = records.iter().map(|(name, _)| normalize(name)).collect();
    for name in previous {
        if !now.contains(&normalize(name)) {
            zone.remove(name);
        }
    }
    for (name, ips) in records {
        zone.set_headless_service(name, ips.iter().copied());
    }
    records.iter().map(|(name, _)| name.clone()).collect()
}

fn describe(records: &Records) -> String {
    let list: Vec<String> = records
        .iter()
        .map(|(name, ips)| {
            let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
            format!("{name}=[{}]", ips.join(","))
        })
        .collect();
    list.join(" ")
}

/// What [`load`] read and applied, for [`watch`] to go on from.
pub struct Loaded {
    names: Vec<String>,
    text: String,
}

/// Reads the file once (at start: an error here is fatal to the caller).
pub fn load(zone: &Zone, path: &Path) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let records = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("headless-dns: {}: {}", path.display(), describe(&records));
    Ok(Loaded {
        names: apply(zone, &[], &records),
        text,
    })
}

/// Reads the file every [`POLL_INTERVAL`] and applies each new content; never returns. (The
/// file is a few lines: reading it is cheaper and surer than trusting mtimes, which two writes
/// within one clock tick share.)
pub async fn watch(zone: Zone, path: PathBuf, loaded: Loaded) {
    let Loaded {
        mut names,
        text: mut last,
    } = loaded;
    let mut reported_unreadable = false;
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    loop {
        interval.tick().await;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                if !reported_unreadable {
                    eprintln!(
                        "headless-dns: {}: {e}; keeping the current records",
                        path.display()
                    );
                    reported_unreadable = true;
                }
                continue;
            }
        };
        reported_unreadable = false;
        if text == last {
            continue;
        }
        match parse(&text) {
            Ok(records) => {
                names = apply(&zone, &names, &records);
                eprintln!("headless-dns: {}: {}", path.display(), describe(&records));
            }
            Err(e) => eprintln!(
                "headless-dns: {}: {e}; keeping the current records",
                path.display()
            ),
        }
        last = text;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_lines_comments_blanks_and_empty_lists() {
        let text = "# pods of service1\n\
                    service1.chaos.test=127.0.0.11,127.0.0.12\n\
                    \n\
                    \x20 other.test. = 10.0.0.1 , 10.0.0.2 \n\
                    empty.test=\n";
        let records = parse(text).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].0, "service1.chaos.test");
        assert_eq!(
            records[0].1,
            vec![Ipv4Addr::new(127, 0, 0, 11), Ipv4Addr::new(127, 0, 0, 12)]
        );
        assert_eq!(records[1].0, "other.test.");
        assert_eq!(records[1].1.len(), 2);
        assert!(records[2].1.is_empty());
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn a_bad_line_makes_the_whole_file_bad_and_says_where() {
        let bad_ip = parse("a.test=10.0.0.1\nb.test=10.0.0.x\n").unwrap_err();
        assert!(
            bad_ip.contains("line 2") && bad_ip.contains("10.0.0.x"),
            "{bad_ip}"
        );
        let no_equals = parse("a.test 10.0.0.1\n").unwrap_err();
        assert!(no_equals.contains("line 1"), "{no_equals}");
        assert!(parse("=10.0.0.1\n").is_err());
        let twice = parse("a.test=10.0.0.1\nA.Test.=10.0.0.2\n").unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
    }

    #[test]
    fn applying_a_new_version_removes_names_it_no_longer_has() {
        let zone = Zone::new();
        let names = apply(
            &zone,
            &[],
            &parse("a.test=10.0.0.1\nb.test=10.0.0.2\n").unwrap(),
        );
        assert_eq!(
            zone.records("a.test").unwrap().a,
            vec![Ipv4Addr::new(10, 0, 0, 1)]
        );
        let names = apply(&zone, &names, &parse("b.test=10.0.0.3\nc.test=\n").unwrap());
        assert_eq!(zone.records("a.test"), None, "gone from the file: NXDOMAIN");
        assert_eq!(
            zone.records("b.test").unwrap().a,
            vec![Ipv4Addr::new(10, 0, 0, 3)]
        );
        assert_eq!(zone.records("c.test"), None, "no address: NXDOMAIN");
        assert_eq!(names, vec!["b.test".to_owned(), "c.test".to_owned()]);
    }

    #[tokio::test]
    async fn the_watcher_follows_renames_and_keeps_records_over_a_bad_file() {
        let dir = std::env::temp_dir().join(format!("headless-dns-zone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("zone");
        let write = |text: &str| {
            let tmp = dir.join("zone.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        };
        write("a.test=10.0.0.1\n");
        let zone = Zone::new();
        let loaded = load(&zone, &path).unwrap();
        let watcher = tokio::spawn(watch(zone.clone(), path.clone(), loaded));
        let a = |zone: &Zone| zone.records("a.test").map(|r| r.a);
        let settle = || tokio::time::sleep(POLL_INTERVAL * 4);

        write("a.test=10.0.0.2\n");
        settle().await;
        assert_eq!(a(&zone), Some(vec![Ipv4Addr::new(10, 0, 0, 2)]));
        write("a.test=not-an-ip\n");
        settle().await;
        assert_eq!(
            a(&zone),
            Some(vec![Ipv4Addr::new(10, 0, 0, 2)]),
            "bad file: kept"
        );
        std::fs::remove_file(&path).unwrap();
        settle().await;
        assert_eq!(
            a(&zone),
            Some(vec![Ipv4Addr::new(10, 0, 0, 2)]),
            "no file: kept"
        );
        write("a.test=\n");
        settle().await;
        assert_eq!(a(&zone), None, "empty list: NXDOMAIN");
        watcher.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
