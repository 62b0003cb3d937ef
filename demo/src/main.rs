//! `headway-demo [options]`: see `headway-demo --help` and [`headway_demo::runner`].

use std::process::ExitCode;

use headway_demo::{options, runner};

fn main() -> ExitCode {
    let options = match options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(options::Help) => {
            println!("{}", options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(options::Invalid(e)) => {
            eprintln!("headway-demo: {e}\n{}", options::USAGE);
            return ExitCode::from(2);
        }
    };
    // One thread: every child is spawned from this (the main) thread, which lives as long as the
    // process, so the children's parent-death signal fires only when the demo itself is gone.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("headway-demo: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(runner::run(options))
}
