//! A [`Sink`] for callers on ordinary threads: an unbounded queue whose
//! receiver waits with a timeout (so a caller can check for Ctrl-C between
//! tokens) and whose drop tells the engine thread to cancel the sequence.
//!
//! `std::sync::mpsc` cannot say whether its receiver is gone without
//! sending, which the engine thread must ask every step; this is a
//! `Mutex<VecDeque>` with a condition variable and a closed flag.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Event, Sink};

#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<Event>>,
    ready: Condvar,
    /// The receiver was dropped.
    receiver_gone: AtomicBool,
    /// The sender was dropped (nothing more will come).
    sender_gone: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Event>> {
        // A panic while holding this lock leaves a plain queue behind,
        // which is still consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The engine thread's end of a [`channel`].
pub struct EventSender(Arc<Shared>);

/// The caller's end of a [`channel`]; dropping it cancels the sequence.
pub struct EventReceiver(Arc<Shared>);

/// Why [`EventReceiver::recv_timeout`] returned no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing arrived in time.
    Timeout,
    /// The sender is gone and the queue is empty.
    Disconnected,
}

/// A new channel.
pub fn channel() -> (EventSender, EventReceiver) {
    let shared = Arc::new(Shared::default());
    (EventSender(Arc::clone(&shared)), EventReceiver(shared))
}

impl Sink for EventSender {
    fn send(&self, event: Event) -> bool {
        if self.is_closed() {
            return false;
        }
        self.0.lock().push_back(event);
        self.0.ready.notify_all();
        true
    }

    fn is_closed(&self) -> bool {
        self.0.receiver_gone.load(Ordering::SeqCst)
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        let _guard = self.0.lock();
        self.0.sender_gone.store(true, Ordering::SeqCst);
        self.0.ready.notify_all();
    }
}

impl EventReceiver {
    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvError> {
        let deadline = Instant::now() + timeout;
        let mut queue = self.0.lock();
        loop {
            if let Some(event) = queue.pop_front() {
                return Ok(event);
            }
            if self.0.sender_gone.load(Ordering::SeqCst) {
                return Err(RecvError::Disconnected);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvError::Timeout);
            }
            queue = self
                .0
                .ready
                .wait_timeout(queue, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Tells the engine thread that nobody listens any more (as dropping
    /// the receiver does): the sequence is cancelled at its next step.
    pub fn close(&self) {
        self.0.receiver_gone.store(true, Ordering::SeqCst);
    }

    /// Every event already queued, without waiting.
    pub fn drain(&self) -> Vec<Event> {
        self.0.lock().drain(..).collect()
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        self.0.receiver_gone.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_in_order_then_reports_disconnection() {
        let (tx, rx) = channel();
        assert!(tx.send(Event::Text("a".into())));
        assert!(tx.send(Event::Text("b".into())));
        drop(tx);
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(Event::Text("a".into())));
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(Event::Text("b".into())));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(RecvError::Disconnected)
        );
    }

    #[test]
    fn times_out_and_wakes_on_send() {
        let (tx, rx) = channel();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(5)),
            Err(RecvError::Timeout)
        );
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(Event::Text("late".into()))
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(Event::Text("late".into()))
        );
        assert!(sender.join().unwrap());
    }

    #[test]
    fn dropping_the_receiver_closes_the_sink() {
        let (tx, rx) = channel();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert!(!tx.send(Event::Text("lost".into())));
    }
}
