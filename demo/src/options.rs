//! The driver's command line.

use std::net::Ipv4Addr;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: headway-demo [--conf PATH] [--pod-ip-base IP] [--log-dir DIR] [--bin-dir DIR]

  --conf PATH         headway's conf (default conf/headway.yaml). The demo reads from it where
                      to serve DNS (gateway.resolver.nameservers), the pods' port (each cluster's
                      port), headway's listeners and the DNS refresh rates, and hands it to headway.
  --pod-ip-base IP    pods of service1 get IP+11, +12, ..., of service2 IP+21, ... (default
                      127.0.0.0: 127.0.0.11-20 and 127.0.0.21-30)
  --log-dir DIR       where headway's and the pods' logs go (default: demo-logs/ next to this binary)
  --bin-dir DIR       where the headway and hello-service binaries are (default: next to this binary)

Then type commands on stdin: scale <service> <n>, status, logs [n], help, quit.";

/// What the command line says; every path relative to the current directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Default: `conf/headway.yaml`.
    pub conf: PathBuf,
    /// Default: 127.0.0.0.
    pub pod_ip_base: Ipv4Addr,
    /// Default: `demo-logs` in the binaries' directory.
    pub log_dir: Option<PathBuf>,
    /// Default: the directory of the running executable.
    pub bin_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            conf: PathBuf::from("conf/headway.yaml"),
            pod_ip_base: Ipv4Addr::new(127, 0, 0, 0),
            log_dir: None,
            bin_dir: None,
        }
    }
}

/// Why the command line gives no [`Options`].
#[derive(Debug, PartialEq, Eq)]
pub enum NoOptions {
    /// `-h` / `--help`.
    Help,
    Invalid(String),
}

pub use NoOptions::{Help, Invalid};

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, NoOptions> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(Help);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| Invalid(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--conf" => options.conf = PathBuf::from(value()?),
            "--pod-ip-base" => {
                let text = value()?;
                let ip: Ipv4Addr = text
                    .parse()
                    .map_err(|_| Invalid(format!("--pod-ip-base {text}: not an IPv4 address")))?;
                if !ip.is_loopback() {
                    return Err(Invalid(format!(
                        "--pod-ip-base {text}: pods live on loopback addresses (127.x.y.z)"
                    )));
                }
                options.pod_ip_base = ip;
            }
            "--log-dir" => options.log_dir = Some(PathBuf::from(value()?)),
            "--bin-dir" => options.bin_dir = Some(PathBuf::from(value()?)),
            other => return Err(Invalid(format!("unknown argument {other}"))),
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_list(list: &[&str]) -> Result<Options, NoOptions> {
        parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults() {
        assert_eq!(parse_list(&[]).unwrap(), Options::default());
    }

    #[test]
    fn every_option_both_spellings() {
        let options = parse_list(&[
            "--conf",
            "/tmp/c.yaml",
            "--pod-ip-base=127.0.3.0",
            "--log-dir",
            "/tmp/logs",
            "--bin-dir=/opt/bin",
        ])
        .unwrap();
        assert_eq!(options.conf, PathBuf::from("/tmp/c.yaml"));
        assert_eq!(options.pod_ip_base, Ipv4Addr::new(127, 0, 3, 0));
        assert_eq!(options.log_dir, Some(PathBuf::from("/tmp/logs")));
        assert_eq!(options.bin_dir, Some(PathBuf::from("/opt/bin")));
    }

    #[test]
    fn errors_say_which_argument() {
        assert_eq!(parse_list(&["--help"]), Err(Help));
        let Err(Invalid(e)) = parse_list(&["--pod-ip-base", "10.0.0.0"]) else {
            panic!("not loopback")
        };
        assert!(e.contains("loopback"), "{e}");
        let Err(Invalid(e)) = parse_list(&["--conf"]) else {
            panic!("missing value")
        };
        assert!(e.contains("--conf"), "{e}");
        let Err(Invalid(e)) = parse_list(&["--dns"]) else {
            panic!("unknown")
        };
        assert!(e.contains("--dns"), "{e}");
    }
}
