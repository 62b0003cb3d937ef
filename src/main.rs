//! `headway -c conf.yaml [-t] [-d] [-u]`: load the conf (every error at once), then run.

use headway::config::Config;
use pingora::server::configuration::Opt;
use std::path::Path;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: a request allocates and frees many small buffers, and
/// under glibc that cost ~13% of the proxy's CPU and fragmented memory held by idle
/// connections (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
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
    match headway::gateway::run(config, opt) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("headway: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
