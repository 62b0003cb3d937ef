//! The access log's queue and writer: requests append their lines to one shared buffer, and a
//! thread of the log's own writes it, at most once every [`GATHER`] (sooner once it holds
//! [`BATCH_BYTES`], or when a flush asks).
//!
//! A request only takes a lock and appends: it wakes the writer only when the writer sleeps
//! (nothing was queued) or a batch is full, so under steady traffic lines cost no system call
//! and no thread switch of their own, a line after a quiet spell is written at once, and an
//! idle gateway's writer never wakes.

use super::line::Clock;
use prometheus::IntCounter;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The writer writes once this much is queued, without waiting for the rest of [`GATHER`].
const BATCH_BYTES: usize = 64 * 1024;
/// How long the writer lets lines gather after a write: a line reaches its file at most this
/// long after its request ends (Envoy: `file_flush_interval_msec`, 1 s).
const GATHER: Duration = Duration::from_millis(100);

/// What requests and the writer share, under one lock.
pub(super) struct Pending {
    /// Lines not yet taken by the writer.
    pub(super) buf: Vec<u8>,
    /// The time of the last line, formatted.
    pub(super) clock: Clock,
    /// Lines in `buf`.
    lines: usize,
    /// Lines accepted so far, and written (or failed to write) so far.
    queued: u64,
    written: u64,
    /// A flush waits until `written` reaches this.
    flush_to: u64,
    /// The writer waits for a first line (`asleep`), or for its batch to gather (`gathering`).
    asleep: bool,
    gathering: bool,
    /// The log is dropped: the writer writes what is left and ends.
    closing: bool,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            buf: Vec::with_capacity(BATCH_BYTES),
            clock: Clock::default(),
            lines: 0,
            queued: 0,
            written: 0,
            flush_to: 0,
            asleep: false,
            gathering: false,
            closing: false,
        }
    }
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer.
    wake: Condvar,
    /// Tells flushes that `written` moved.
    written: Condvar,
}

/// The request path's end of the log: where lines go, and how many may wait.
pub(super) struct Queue {
    shared: Arc<Shared>,
    /// Where the writer writes, until the writer thread takes it.
    out: Mutex<Option<Box<dyn Write + Send>>>,
    /// Whether the writer thread runs (set by the first line).
    started: OnceLock<bool>,
    /// Lines waiting at most; a line that finds this many is dropped.
    capacity: usize,
    pub(super) dropped: Option<IntCounter>,
    /// Whether the first drop has been logged.
    warned: AtomicBool,
}

impl Queue {
    pub(super) fn new(out: Box<dyn Write + Send>, capacity: usize) -> Queue {
        Queue {
            shared: Arc::new(Shared {
                pending: Mutex::new(Pending::new()),
                wake: Condvar::new(),
                written: Condvar::new(),
            }),
            out: Mutex::new(Some(out)),
            started: OnceLock::new(),
            capacity,
            dropped: None,
            warned: AtomicBool::new(false),
        }
    }

    /// Appends one line, written by `line` into the buffer (it must add one whole line or
    /// nothing); drops and counts it when the queue is full or the writer could not start.
    pub(super) fn push(&self, line: impl FnOnce(&mut Pending)) {
        if !self.start() {
            return self.count_drop();
        }
        let mut p = crate::lock(&self.shared.pending);
        if p.lines >= self.capacity {
            drop(p);
            return self.count_drop();
        }
        let before = p.buf.len();
        line(&mut p);
        if p.buf.len() == before {
            return;
        }
        p.lines += 1;
        p.queued += 1;
        let wake = (p.asleep && p.lines == 1) || (p.gathering && p.buf.len() >= BATCH_BYTES);
        if wake {
            // Once: the writer clears these when it wakes.
            p.asleep = false;
            p.gathering = false;
        }
        drop(p);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Waits until every line queued so far is written, at most until `deadline`.
    pub(super) fn flush(&self, deadline: Instant) {
        if self.started.get() != Some(&true) {
            return;
        }
        let mut p = crate::lock(&self.shared.pending);
        let target = p.queued;
        p.flush_to = p.flush_to.max(target);
        self.shared.wake.notify_one();
        while p.written < target {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            p = wait(&self.shared.written, p, Some(left));
        }
    }

    /// The writer writes what is left and ends (after a [`Queue::flush`], at most).
    pub(super) fn close(&self) {
        crate::lock(&self.shared.pending).closing = true;
        self.shared.wake.notify_one();
    }

    fn count_drop(&self) {
        if let Some(dropped) = &self.dropped {
            dropped.inc();
        }
        if !self.warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "access log: its writer falls behind, lines are dropped from now on while it does \
                 (counted in headway_access_log_dropped_total)"
            );
        }
    }

    /// Starts the writer thread with the first line, after pingora has forked (`-d`): a thread
    /// does not survive a fork.
    fn start(&self) -> bool {
        *self.started.get_or_init(|| {
            let Some(out) = crate::lock(&self.out).take() else {
                return false;
            };
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("access-log".to_owned())
                .spawn(move || write_lines(&shared, out));
            if let Err(e) = &spawned {
                log::error!("access log: cannot start its writer thread, lines are dropped: {e}");
            }
            spawned.is_ok()
        })
    }
}

fn wait<'a>(
    condvar: &Condvar,
    guard: MutexGuard<'a, Pending>,
    timeout: Option<Duration>,
) -> MutexGuard<'a, Pending> {
    match timeout {
        None => condvar.wait(guard).unwrap_or_else(|e| e.into_inner()),
        Some(t) => match condvar.wait_timeout(guard, t) {
            Ok((guard, _)) => guard,
            Err(e) => e.into_inner().0,
        },
    }
}

/// The writer thread: sleeps while nothing is queued; writes what is queued in one `write`,
/// then lets the next lines gather for [`GATHER`] (a first line after a quiet spell is thus
/// written at once, and steady traffic costs one write per [`GATHER`]); until the log is
/// closed and everything is written.
fn write_lines(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    let mut p = crate::lock(&shared.pending);
    loop {
        while p.lines == 0 && !p.closing {
            p.asleep = true;
            p = wait(&shared.wake, p, None);
            p.asleep = false;
        }
        if p.lines == 0 {
            return; // closing, and everything is written
        }
        let lines = take_batch(&mut p, &mut batch);
        drop(p);
        if let Err(e) = out.write_all(&batch).and_then(|()| out.flush()) {
            log::warn!("access log: cannot write: {e}");
        }
        batch.clear();
        // A burst's buffer is not kept for ever.
        if batch.capacity() > 4 * BATCH_BYTES {
            batch = Vec::with_capacity(BATCH_BYTES);
        }
        p = crate::lock(&shared.pending);
        p.written += lines as u64;
        if p.flush_to > p.written - lines as u64 {
            shared.written.notify_all();
        }
        let urgent = p.closing || p.flush_to > p.written || p.buf.len() >= BATCH_BYTES;
        if !urgent {
            p.gathering = true;
            p = wait(&shared.wake, p, Some(GATHER));
            p.gathering = false;
        }
    }
}

/// Moves the oldest lines, at most [`BATCH_BYTES`] of them (at least one line), into the empty
/// `batch`; returns how many. A writer that falls behind thus holds one batch, the rest stays
/// counted in the queue, where new lines find it full.
fn take_batch(p: &mut Pending, batch: &mut Vec<u8>) -> usize {
    if p.buf.len() <= BATCH_BYTES {
        std::mem::swap(&mut p.buf, batch);
        return std::mem::take(&mut p.lines);
    }
    // Every line ends in its only `\n` (escaped inside values).
    let cut = p.buf[..BATCH_BYTES]
        .iter()
        .rposition(|&b| b == b'\n')
        .or_else(|| p.buf.iter().position(|&b| b == b'\n'))
        .map_or(p.buf.len(), |at| at + 1);
    batch.extend(p.buf.drain(..cut));
    let lines = batch.iter().filter(|&&b| b == b'\n').count().min(p.lines);
    p.lines -= lines;
    lines
}

/// stderr, locked for each batch so that no other log line lands inside one of its lines.
pub(super) struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().lock().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().lock().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(lines: &[&[u8]]) -> Pending {
        let mut p = Pending::new();
        for line in lines {
            p.buf.extend_from_slice(line);
            p.lines += 1;
        }
        p
    }

    #[test]
    fn a_batch_is_whole_lines_of_at_most_64_kib() {
        let long = [vec![b'a'; 30 * 1024], vec![b'\n']].concat();
        let mut p = pending(&[&long, &long, &long, b"short\n"]);
        let mut batch = Vec::new();
        assert_eq!(take_batch(&mut p, &mut batch), 2);
        assert_eq!(batch.len(), 2 * long.len());
        assert_eq!((p.lines, p.buf.len()), (2, long.len() + 6));
        batch.clear();
        assert_eq!(take_batch(&mut p, &mut batch), 2);
        assert_eq!((p.lines, p.buf.len()), (0, 0));
        // A line longer than a batch goes whole.
        let huge = [vec![b'b'; 100 * 1024], vec![b'\n']].concat();
        let mut p = pending(&[&huge, b"next\n"]);
        batch.clear();
        assert_eq!(take_batch(&mut p, &mut batch), 1);
        assert_eq!(batch, huge);
        assert_eq!(p.buf, b"next\n");
    }
}
