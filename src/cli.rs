//! headway's command line, in its own words: `-c conf.yaml [-t] [-d] [-u]`, `--help`,
//! `--version` (with the commit the binary was built from).

use clap::Parser;
use pingora::server::configuration::Opt;

/// `headway --version`: the crate's version and the commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("HEADWAY_COMMIT"), ")");

/// The arguments `headway` takes.
#[derive(Debug, Parser)]
#[command(
    name = "headway",
    version = VERSION,
    about = "A programmable HTTP gateway: routes requests to pods it finds by DNS, health-checks \
             them, and balances, retries and limits on its way.",
    after_help = "Example: headway -c conf/headway.yaml     (add -t to only check the conf)\n\
                  Logs go to stderr; RUST_LOG sets their level (default: info)."
)]
pub struct Args {
    /// The conf file: pingora's server keys at the top, headway's under `gateway:`.
    #[arg(short, long, value_name = "FILE")]
    pub conf: Option<String>,
    /// Check the conf (every error at once, each with its key) and exit: 0 if it is valid.
    #[arg(short, long)]
    pub test: bool,
    /// Run in the background (pingora's daemon mode: `pid_file` and `error_log` say where).
    #[arg(short, long)]
    pub daemon: bool,
    /// Take over the listening sockets of a running headway through `upgrade_sock`, then let it
    /// finish (a graceful upgrade: start the new binary with -u, send SIGQUIT to the old one).
    #[arg(short, long)]
    pub upgrade: bool,
    /// `cargo test` passes it to test binaries; accepted and ignored.
    #[arg(long, hide = true)]
    pub nocapture: bool,
}

impl Args {
    /// pingora's options for the same arguments.
    pub fn opt(&self) -> Opt {
        Opt {
            upgrade: self.upgrade,
            daemon: self.daemon,
            nocapture: self.nocapture,
            test: self.test,
            conf: self.conf.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_help_is_headways_own() {
        Args::command().debug_assert();
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("--conf <FILE>"), "{help}");
        assert!(help.contains("graceful upgrade"), "{help}");
        assert!(!help.contains("pingora-based service"), "{help}");
    }

    #[test]
    fn flags_reach_pingora() {
        let args = Args::try_parse_from(["headway", "-c", "h.yaml", "-t", "-u"]).unwrap();
        let opt = args.opt();
        assert_eq!(opt.conf.as_deref(), Some("h.yaml"));
        assert!(opt.test && opt.upgrade && !opt.daemon);
    }
}
