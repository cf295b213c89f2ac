//! CPU-bound request work off the async runtime, abandoned when the client
//! leaves. Owns the cancel flag and its drop guard; never decides what the
//! work is (the token estimate of `count_tokens` today).
//!
//! A handler's future is dropped when its client disconnects; a
//! `spawn_blocking` task is not. So the work gets a flag, and a guard held
//! by the awaiting future sets it on drop; the work checks the flag between
//! bounded steps and returns early.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinError;

/// Sets its flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `work` on the blocking pool. Dropping the returned future before it
/// completes sets the flag `work` is given.
pub async fn run_cancellable<T, F>(work: F) -> Result<T, JoinError>
where
    T: Send + 'static,
    F: FnOnce(&AtomicBool) -> T + Send + 'static,
{
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    tokio::task::spawn_blocking(move || work(&cancel)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn dropping_the_future_stops_the_work() {
        let (saw_cancel, stopped) = tokio::sync::oneshot::channel();
        let work = run_cancellable(move |cancel| {
            // Bounded: fails the test instead of spinning forever.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !cancel.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = saw_cancel.send(cancel.load(Ordering::Relaxed));
        });
        // The client "leaves" while the work runs.
        let left = tokio::time::timeout(Duration::from_millis(50), work).await;
        assert!(left.is_err(), "the work finished on its own");
        let seen = tokio::time::timeout(Duration::from_secs(10), stopped).await;
        assert_eq!(seen.ok().and_then(Result::ok), Some(true));
    }

    #[tokio::test]
    async fn finished_work_returns_its_value() {
        let value = run_cancellable(|cancel| !cancel.load(Ordering::Relaxed)).await;
        assert_eq!(value.ok(), Some(true));
    }
}
