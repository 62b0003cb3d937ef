//! `headway -c conf.yaml [-t] [-d] [-u]`: load the conf (every error at once), then run.

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: a request allocates and frees many small buffers, and
/// under glibc that cost ~13% of the proxy's CPU and fragmented memory held by idle
/// connections (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc reads these before `main`: with its defaults an idle gateway held 26 MB, 10,000
/// idle connections 1 GB, and nothing was returned when they closed: its arenas were committed
/// eagerly. Committing them lazily gives 11 MB idle, returned on close. Freed pages are purged
/// 10 ms after they are freed (mimalloc's default): purging at once cost ~5% more CPU per
/// request under load (34.5 vs 36.1 µs, interleaved A/B), and 250 ms returned nothing after a
/// spike, purges being done during later allocations (bench/lib/scale.py, BENCHMARKS.md).
const ALLOCATOR_ENV: [(&str, &str); 2] = [
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ("MIMALLOC_PURGE_DELAY", "10"),
];

/// Sets the allocator's options by re-executing this binary once with them in its environment
/// (same pid, same arguments). An operator's own values are kept; if the exec fails, headway
/// runs on with mimalloc's defaults.
fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    if ALLOCATOR_ENV
        .iter()
        .all(|(k, _)| std::env::var_os(k).is_some())
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut command = std::process::Command::new(exe);
    command.args(std::env::args_os().skip(1));
    for (key, value) in ALLOCATOR_ENV {
        if std::env::var_os(key).is_none() {
            command.env(key, value);
        }
    }
    let error = command.exec();
    eprintln!("headway: running with the allocator's default options: {error}");
}

fn main() -> ExitCode {
    tune_allocator();
    headway::Headway::new().main()
}
