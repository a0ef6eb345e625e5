//! Freeing large values off the hot path. A replaced snapshot, generation or static-source
//! state can hold tens of thousands of allocations; freeing them where they are replaced
//! would delay the push of the new one. [`drop_later`] hands them to one background thread.

use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};

type Garbage = Box<dyn Send>;

fn sender() -> Option<&'static Mutex<Sender<Garbage>>> {
    static SENDER: OnceLock<Option<Mutex<Sender<Garbage>>>> = OnceLock::new();
    SENDER
        .get_or_init(|| {
            let (tx, rx) = channel::<Garbage>();
            std::thread::Builder::new()
                .name("drop-later".to_owned())
                .spawn(move || {
                    for garbage in rx {
                        drop(garbage);
                    }
                })
                .ok()
                .map(|_| Mutex::new(tx))
        })
        .as_ref()
}

/// Drops `value` on the background thread (or here, when that thread could not be started).
pub fn drop_later<T: Send + 'static>(value: T) {
    let Some(sender) = sender() else {
        return;
    };
    let garbage: Garbage = Box::new(value);
    match sender.lock() {
        Ok(tx) => {
            // The thread never ends while the process runs; if it did, the value drops here.
            let _ = tx.send(garbage);
        }
        Err(_) => drop(garbage),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn the_value_is_dropped_on_another_thread() {
        let value = Arc::new(());
        let weak = Arc::downgrade(&value);
        super::drop_later(value);
        let deadline = Instant::now() + Duration::from_secs(10);
        while weak.upgrade().is_some() {
            assert!(Instant::now() < deadline, "never dropped");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
