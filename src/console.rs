//! Console lines, written off the request path.
//!
//! The console layer formats each `tracing` event on the thread that made it, often a request's.
//! Writing the line there would make the request wait for whatever reads the process's standard
//! output: a terminal, a log shipper that stalls, or a pipe nobody reads, which blocks its writer
//! for good once its 64 KiB are full. So the lines go through a bounded queue to one writer
//! thread; when the queue is full, a line is dropped and counted, and the writer says how many
//! were dropped as soon as it can write again. The queue holds at most [`QUEUE_BYTES`] of lines.
//!
//! [`Telemetry`](crate::Telemetry)'s shutdown waits, within its deadline, for the queued lines to
//! be written; from then on lines are written directly, so that a process about to exit keeps
//! its last lines.

use std::{
    io::{self, Write},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc::{self, Receiver, Sender},
    },
    thread,
    time::Instant,
};

use tracing_subscriber::fmt::MakeWriter;

/// How many bytes of lines may wait for the writer thread: about 4,000 lines of 250 bytes, a
/// burst a terminal or a log shipper takes in well under a second.
const QUEUE_BYTES: usize = 1024 * 1024;

/// Where console lines go; clones share the queue and the writer thread.
#[derive(Clone)]
pub(crate) struct Console {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Sender<Message>,
    /// The bytes of the lines in `queue`, at most `capacity`.
    queued_bytes: AtomicUsize,
    capacity: usize,
    /// Lines dropped because the queue was full, not yet reported.
    dropped: AtomicU64,
    /// Set once the queue has been drained at shutdown: lines are written by their own thread.
    direct: AtomicBool,
    output: Arc<Mutex<Box<dyn Write + Send>>>,
}

enum Message {
    Line(Vec<u8>),
    /// Answered once every line queued before it is written.
    Drained(mpsc::Sender<()>),
}

impl Console {
    /// Console lines to standard output.
    pub(crate) fn stdout() -> Self {
        Self::new(Box::new(io::stdout()), QUEUE_BYTES)
    }

    /// Lines to `output` through a queue of `capacity` bytes, written by a thread of their own.
    /// Without that thread (the system refused it), lines are written directly.
    fn new(output: Box<dyn Write + Send>, capacity: usize) -> Self {
        let (queue, lines) = mpsc::channel();
        let shared = Arc::new(Shared {
            queue,
            queued_bytes: AtomicUsize::new(0),
            capacity,
            dropped: AtomicU64::new(0),
            direct: AtomicBool::new(false),
            output: Arc::new(Mutex::new(output)),
        });
        let writer = {
            let output = shared.output.clone();
            let shared = Arc::downgrade(&shared);
            thread::Builder::new()
                .name("otel-monitor-console".to_owned())
                .spawn(move || write_lines(&lines, &output, &shared))
        };
        if writer.is_err() {
            shared.direct.store(true, Ordering::Relaxed);
        }
        Self { shared }
    }

    /// Waits until `deadline` at most for the queued lines to be written; once they are, lines
    /// are written directly. When the output stays blocked past the deadline, lines stay queued
    /// (and dropped when the queue is full): writing directly would block the caller.
    pub(crate) fn drain(&self, deadline: Instant) {
        if self.shared.direct.load(Ordering::Relaxed) {
            return;
        }
        let (drained, written) = mpsc::channel();
        if self.shared.queue.send(Message::Drained(drained)).is_err() {
            return;
        }
        if written
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
        {
            self.shared.direct.store(true, Ordering::Relaxed);
        }
    }

    /// Lines dropped so far and not yet reported on the console.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("direct", &self.shared.direct.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The writer thread: writes what is queued, as many lines at a time as are waiting, and after
/// them how many were dropped meanwhile.
fn write_lines(
    lines: &Receiver<Message>,
    output: &Mutex<Box<dyn Write + Send>>,
    shared: &std::sync::Weak<Shared>,
) {
    while let Ok(first) = lines.recv() {
        // Held for this batch only: once every `Console` is gone, the queue ends and so does
        // this thread.
        let shared = shared.upgrade();
        let mut output = output.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    let _ = output.write_all(&line);
                    if let Some(shared) = &shared {
                        shared.queued_bytes.fetch_sub(line.len(), Ordering::Relaxed);
                    }
                }
                Message::Drained(drained) => {
                    report_dropped(&mut **output, shared.as_deref());
                    let _ = output.flush();
                    let _ = drained.send(());
                }
            }
            next = lines.try_recv().ok();
        }
        report_dropped(&mut **output, shared.as_deref());
        let _ = output.flush();
    }
}

/// Writes how many lines were dropped since the last report, if any were.
fn report_dropped(output: &mut dyn Write, shared: Option<&Shared>) {
    let dropped = shared.map_or(0, |shared| shared.dropped.swap(0, Ordering::Relaxed));
    if dropped > 0 {
        let _ = writeln!(
            output,
            "otel-monitor: {dropped} console line{} dropped: the standard output was not keeping up",
            if dropped == 1 { "" } else { "s" },
        );
    }
}

impl<'a> MakeWriter<'a> for Console {
    type Writer = &'a Console;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Each `write` is one formatted line: the console layer writes an event with one `write_all`.
impl Write for &Console {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let shared = &self.shared;
        if !shared.direct.load(Ordering::Relaxed) {
            let queued = shared.queued_bytes.fetch_add(line.len(), Ordering::Relaxed);
            if queued + line.len() > shared.capacity {
                shared.queued_bytes.fetch_sub(line.len(), Ordering::Relaxed);
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(line.len());
            }
            if shared.queue.send(Message::Line(line.to_vec())).is_ok() {
                return Ok(line.len());
            }
            // The writer thread is gone (it panicked): write here from now on.
            shared.direct.store(true, Ordering::Relaxed);
        }
        let mut output = shared.output.lock().unwrap_or_else(PoisonError::into_inner);
        output.write_all(line)?;
        output.flush()?;
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Condvar, time::Duration};

    use super::*;

    /// An output that blocks every write until it is opened, as a full pipe does.
    #[derive(Clone, Default)]
    struct Gated {
        open: Arc<(Mutex<bool>, Condvar)>,
        /// How many writes have begun.
        entered: Arc<(Mutex<usize>, Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Gated {
        /// Waits (at most 5 s) until `count` writes have begun.
        fn wait_entered(&self, count: usize) {
            let (entered, changed) = &*self.entered;
            let (entered, timeout) = changed
                .wait_timeout_while(entered.lock().unwrap(), Duration::from_secs(5), |entered| {
                    *entered < count
                })
                .unwrap();
            assert!(
                !timeout.timed_out(),
                "{} writes began, not {count}",
                *entered
            );
        }

        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Gated {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            *self.entered.0.lock().unwrap() += 1;
            self.entered.1.notify_all();
            let (open, opened) = &*self.open;
            let _open = opened
                .wait_while(open.lock().unwrap(), |open| !*open)
                .unwrap();
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn line(console: &Console, text: &str) {
        (&*console).write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn a_blocked_output_costs_dropped_lines_never_a_blocked_caller() {
        let output = Gated::default();
        // Room for five 7-byte lines, the one being written included.
        let console = Console::new(Box::new(output.clone()), 35);
        // The writer thread takes the first line and blocks on it; four more fill the queue.
        line(&console, "line 0\n");
        output.wait_entered(1);
        for n in 1..5 {
            line(&console, &format!("line {n}\n"));
        }
        assert_eq!(console.dropped(), 0);
        for n in 5..105 {
            line(&console, &format!("line {n}\n"));
        }
        assert_eq!(console.dropped(), 100);

        output.open();
        console.drain(Instant::now() + Duration::from_secs(5));
        assert_eq!(
            output.text(),
            "line 0\nline 1\nline 2\nline 3\nline 4\n\
             otel-monitor: 100 console lines dropped: the standard output was not keeping up\n"
        );
    }

    #[test]
    fn after_the_drain_lines_are_written_directly_and_in_order() {
        let output = Gated::default();
        output.open();
        let console = Console::new(Box::new(output.clone()), 64);
        line(&console, "queued\n");
        console.drain(Instant::now() + Duration::from_secs(5));
        assert_eq!(output.text(), "queued\n");
        line(&console, "direct\n");
        assert_eq!(output.text(), "queued\ndirect\n");
    }

    #[test]
    fn a_drain_past_its_deadline_leaves_lines_queued_and_callers_unblocked() {
        let output = Gated::default();
        // Room for "stuck\n" (being written), "queued\n" and "after\n", not "dropped\n" too.
        let console = Console::new(Box::new(output.clone()), 20);
        line(&console, "stuck\n");
        output.wait_entered(1);
        line(&console, "queued\n");
        let started = Instant::now();
        console.drain(started + Duration::from_millis(200));
        let took = started.elapsed();
        assert!(
            (Duration::from_millis(200)..Duration::from_secs(2)).contains(&took),
            "{took:?}"
        );
        // Still queued, not written here: this would block on the stuck output otherwise.
        line(&console, "after\n");
        line(&console, "dropped\n");
        assert_eq!(console.dropped(), 1);
        output.open();
        console.drain(Instant::now() + Duration::from_secs(5));
        assert_eq!(
            output.text(),
            "stuck\nqueued\n\
             otel-monitor: 1 console line dropped: the standard output was not keeping up\n\
             after\n",
            "the first drain's mark, queued before `after`, reports the line dropped before it"
        );
    }
}
