//! Progress bars on a terminal; nothing when stderr is not one (logs stay clean).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar, hidden unless stderr is a terminal and output is not quiet.
pub fn bar(len: u64, what: &str, bytes: bool, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let template = if bytes {
        "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})"
    } else {
        "{prefix:>10} [{bar:30}] {pos}/{len} {msg}"
    };
    pb.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// Drives `pb` from a shared byte counter until `done` is dropped.
pub fn follow(pb: ProgressBar, counter: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            pb.set_position(counter.load(Ordering::Relaxed));
            if pb.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
