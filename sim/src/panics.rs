//! Panics inside host software, made visible.
//!
//! Turmoil runs each host on a tokio runtime that shuts down on an
//! unhandled panic: the host goes quiet and the run would only fail later,
//! and vaguely, as a liveness failure. A panic hook (installed once,
//! chained to the previous one) records the first panic message on the
//! thread that panicked; a run, which lives on one thread, takes it and
//! fails with it. Panics in the harness itself unwind to the sweep, which
//! catches them per seed ([`crate::sweep`]).

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static FIRST: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs the hook (once per process) and forgets any earlier panic of
/// this thread: call at the start of a run.
pub fn arm() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".to_owned());
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            // `try_with`: a panic while the thread is being torn down has
            // nowhere to be recorded; the previous hook still prints it.
            let _ = FIRST.try_with(|first| {
                if let Ok(mut first) = first.try_borrow_mut() {
                    first.get_or_insert(format!("{message}{place}"));
                }
            });
            previous(info);
        }));
    });
    FIRST.with(|first| *first.borrow_mut() = None);
}

/// Whether this thread has panicked since [`arm`].
pub fn seen() -> bool {
    FIRST.with(|first| first.borrow().is_some())
}

/// The first panic of this thread since [`arm`], if any, cleared.
pub fn take() -> Option<String> {
    FIRST.with(|first| first.borrow_mut().take())
}
