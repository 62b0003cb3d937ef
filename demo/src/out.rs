//! The demo talks to its user on stdout, one line at a time. A closed stdout (the reader went
//! away) must not panic the demo before it has stopped its children: errors are ignored.

use std::fmt::Arguments;
use std::io::Write;

pub fn line(args: Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_fmt(args);
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
}

/// `say!("...", args)`: one line on stdout, like `println!` without the panic.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::out::line(format_args!($($arg)*)) };
}
