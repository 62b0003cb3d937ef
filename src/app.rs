//! headway as a program: its command line (`-c conf.yaml [-t] [-d] [-u]`), and a builder for a
//! program of your own that adds filters to the same server `headway` runs.

use crate::config::Config;
use crate::proxy::filter::{Filter, FilterSetup, Registry};
use pingora::server::configuration::Opt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// A gateway: headway's server with the filters you register. `Headway::new().main()` is the
/// `headway` binary itself.
///
/// ```no_run
/// use headway::filter::{Context, Filter, Flow};
/// use headway::Headway;
/// use std::sync::Arc;
///
/// struct Hello;
/// impl Filter for Hello {}
///
/// fn main() -> std::process::ExitCode {
///     Headway::new()
///         .filter("hello", |_setup| Ok(Arc::new(Hello)))
///         .main()
/// }
/// ```
#[derive(Default)]
pub struct Headway {
    registry: Registry,
}

impl Headway {
    /// headway with its built-in filters.
    pub fn new() -> Headway {
        Headway {
            registry: Registry::new(),
        }
    }

    /// Adds a filter that routes may name in their `filters:` (`- name: <name>` plus the
    /// filter's own keys, handed to `factory` in [`FilterSetup::config`]).
    pub fn filter(
        mut self,
        name: &str,
        factory: impl Fn(&FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> + Send + Sync + 'static,
    ) -> Headway {
        self.registry.register(name, factory);
        self
    }

    /// The filters a conf may name.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Checks `config` as `-t` does: the conf itself was checked when it loaded; this builds
    /// every route's filters. Every error, each with its path.
    pub fn check(&self, config: &Config) -> Result<(), Vec<String>> {
        crate::proxy::filter_chains(&config.gateway, &self.registry, None).map(|_| ())
    }

    /// Runs the gateway for `config` until it is told to stop (`opt`: pingora's command-line
    /// options: daemon, upgrade).
    pub fn run(&self, config: Config, opt: Opt) -> Result<(), String> {
        crate::server::run(config, opt, &self.registry, None)
    }

    /// The `headway` command line: reads the arguments, loads the conf (every error at once),
    /// checks it (`-t`) or runs it. Logs go to stderr (`RUST_LOG`, default `info`).
    pub fn main(self) -> ExitCode {
        let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .try_init();
        let mut opt = Opt::parse_args();
        let Some(path) = opt.conf.clone() else {
            eprintln!(
                "headway: no conf file: run `headway -c conf/headway.yaml` (add -t to only check it)"
            );
            return ExitCode::from(2);
        };
        let config = match Config::load(Path::new(&path)) {
            Ok(config) => config,
            Err(e) => {
                eprint!("headway: {path}: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(errors) = self.check(&config) {
            let n = errors.len();
            eprintln!(
                "headway: {path}: {n} error{} in conf:",
                if n == 1 { "" } else { "s" }
            );
            for e in errors {
                eprintln!("  {e}");
            }
            return ExitCode::FAILURE;
        }
        if opt.test {
            let g = &config.gateway;
            println!(
                "headway: {path}: configuration OK ({} listener(s), {} route(s), {} cluster(s))",
                g.listen.len(),
                g.routes.len(),
                g.clusters.len()
            );
            return ExitCode::SUCCESS;
        }
        // The conf is already loaded; pingora would warn that it ignores the path.
        opt.conf = None;
        match crate::server::run(config, opt, &self.registry, Some(path.clone().into())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("headway: {path}: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
