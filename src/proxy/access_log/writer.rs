//! The access log's writer: a thread of its own that writes the queued lines, many at once.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use prometheus::IntCounter;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// The writer writes up to this much at once (one `write` for many lines under load).
const BATCH_BYTES: usize = 64 * 1024;

/// What the request path sends the writer.
pub(super) enum Message {
    Line(String),
    /// Answered once every line queued before it is written.
    Flush(Sender<()>),
}

/// The writer thread's end of the queue, and where it writes.
pub(super) type Writer = (Receiver<Message>, Box<dyn Write + Send>);

pub(super) struct Queue {
    pub(super) lines: Sender<Message>,
    /// The writer's end of the queue and where it writes, until the writer thread takes them.
    pub(super) writer: Mutex<Option<Writer>>,
    /// Whether the writer thread runs (set by the first line).
    pub(super) started: OnceLock<bool>,
    pub(super) dropped: Option<IntCounter>,
    /// Whether the first drop has been logged.
    pub(super) warned: AtomicBool,
}

impl Queue {
    pub(super) fn push(&self, line: String) {
        self.start();
        match self.lines.try_send(Message::Line(line)) {
            Ok(()) => {}
            // Disconnected: the writer thread could not start, or died.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.count_drop(),
        }
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

    fn start(&self) {
        self.started.get_or_init(|| {
            let Some((pending, out)) = crate::lock(&self.writer).take() else {
                return false;
            };
            let spawned = std::thread::Builder::new()
                .name("access-log".to_owned())
                .spawn(move || write_lines(&pending, out));
            if let Err(e) = &spawned {
                log::error!("access log: cannot start its writer thread, lines are dropped: {e}");
            }
            spawned.is_ok()
        });
    }
}

/// The writer thread: writes what is queued, as many lines at once as have arrived, until the
/// log is dropped.
fn write_lines(pending: &Receiver<Message>, mut out: Box<dyn Write + Send>) {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    let mut flushed = Vec::new();
    while let Ok(first) = pending.recv() {
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(line) => batch.extend_from_slice(line.as_bytes()),
                Message::Flush(done) => flushed.push(done),
            }
            next = if batch.len() < BATCH_BYTES {
                pending.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty() {
            if let Err(e) = out.write_all(&batch).and_then(|()| out.flush()) {
                log::warn!("access log: cannot write: {e}");
            }
            batch.clear();
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
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
