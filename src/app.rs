//! headway as a program: its command line (`-c conf.yaml [-t] [-d] [-u]`, read in `cli.rs`), and
//! a builder for a program of your own that adds filters to the same server `headway` runs.

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
    /// Names [`Headway::filter`] found taken: reported by `check`, `run` and `main`, which then
    /// refuse to start (a built-in silently hidden would change what a conf means).
    taken: Vec<String>,
}

impl Headway {
    /// headway with its built-in filters.
    pub fn new() -> Headway {
        Headway {
            registry: Registry::new(),
            taken: Vec::new(),
        }
    }

    /// Adds a filter that routes may name in their `filters:` (`- name: <name>` plus the
    /// filter's own keys, handed to `factory` in [`FilterSetup::config`]). The name must be new:
    /// a built-in's name (or one added before) is an error that `check`, `run` and `main`
    /// report; [`Headway::replace_filter`] replaces a filter on purpose.
    pub fn filter(
        mut self,
        name: &str,
        factory: impl Fn(&FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> + Send + Sync + 'static,
    ) -> Headway {
        if let Err(taken) = self.registry.register(name, factory) {
            self.taken.push(taken.to_string());
        }
        self
    }

    /// Adds the filter called `name`, replacing headway's built-in filter of that name (or one
    /// added before), so that every route naming it runs `factory`'s filter instead.
    pub fn replace_filter(
        mut self,
        name: &str,
        factory: impl Fn(&FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> + Send + Sync + 'static,
    ) -> Headway {
        self.registry.replace(name, factory);
        self
    }

    /// The filters a conf may name.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Checks `config` as `-t` does: the conf itself was checked when it loaded; this builds
    /// every route's filters and reads every TLS listener's files. Every error, each with its
    /// path.
    pub fn check(&self, config: &Config) -> Result<(), Vec<String>> {
        if !self.taken.is_empty() {
            return Err(self.taken.clone());
        }
        let filters =
            crate::proxy::filter_chains(&config.gateway, &self.registry, None).map(|_| ());
        match (filters, crate::server::check_tls(config)) {
            (Ok(()), Ok(())) => Ok(()),
            (filters, tls) => Err([filters.err(), tls.err()]
                .into_iter()
                .flatten()
                .flatten()
                .collect()),
        }
    }

    /// Runs the gateway for `config` until it is told to stop (`opt`: pingora's command-line
    /// options: daemon, upgrade).
    pub fn run(&self, config: Config, opt: Opt) -> Result<(), String> {
        if !self.taken.is_empty() {
            return Err(self.taken.join("; "));
        }
        crate::server::run(config, opt, &self.registry, None)
    }

    /// The `headway` command line: reads the arguments, loads the conf (every error at once),
    /// checks it (`-t`) or runs it. Logs go to stderr (`RUST_LOG`, default `info`).
    pub fn main(self) -> ExitCode {
        let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .try_init();
        let mut opt = <crate::cli::Args as clap::Parser>::parse().opt();
        if !self.taken.is_empty() {
            for e in &self.taken {
                eprintln!("headway: {e}");
            }
            return ExitCode::from(2);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Filter;

    struct Nothing;
    impl Filter for Nothing {}

    fn nothing(_: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
        Ok(Arc::new(Nothing))
    }

    fn conf() -> Config {
        Config::from_yaml(
            "gateway:\n  routes: [ { prefix: /, cluster: a } ]\n  clusters: [ { name: a, address: 127.0.0.1, port: 80 } ]\n",
        )
        .unwrap()
    }

    #[test]
    fn a_filter_named_like_a_built_in_is_refused_naming_it() {
        let gateway = Headway::new()
            .filter("api_key", nothing)
            .filter("tenant", nothing)
            .filter("tenant", nothing);
        let errors = gateway.check(&conf()).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("filter `api_key` is already registered"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("filter `tenant` is already registered"),
            "{errors:?}"
        );
        let opt = Opt {
            upgrade: false,
            daemon: false,
            nocapture: false,
            test: false,
            conf: None,
        };
        assert!(gateway.run(conf(), opt).unwrap_err().contains("`api_key`"));
    }

    #[test]
    fn replacing_a_built_in_is_said_explicitly() {
        let gateway = Headway::new()
            .replace_filter("api_key", nothing)
            .filter("tenant", nothing);
        assert_eq!(gateway.check(&conf()), Ok(()));
        let names: Vec<&str> = gateway.registry().names().collect();
        assert!(names.contains(&"api_key") && names.contains(&"tenant"));
    }
}
