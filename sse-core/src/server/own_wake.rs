//! [`OwnWake`]: a future polled only when its own waker fired, for the
//! watchers a connection's task keeps beside the connection (the shutdown
//! signal, the idle timer). A task woken to write an event then polls the
//! connection alone instead of every watcher too: with 10,000 streams and a
//! broadcast, that is 10,000 polls of each watcher saved per event.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;

pin_project! {
    /// Wraps a future so that it is polled with a waker of its own, and only
    /// after that waker fired (or on the first poll): a poll of the task
    /// for any other reason returns [`Poll::Pending`] at the cost of one
    /// atomic load.
    pub(super) struct OwnWake<F> {
        #[pin]
        future: F,
        flag: Arc<Flag>,
        // The task's waker as last registered in `flag`: while the task's
        // waker is the same and nothing woke the future, a poll reads the
        // flag and writes nothing to it.
        registered: Option<Waker>,
    }
}

/// The wrapped future's waker: records that it fired and wakes the task.
#[derive(Debug)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F> OwnWake<F> {
    pub(super) fn new(future: F) -> Self {
        OwnWake {
            future,
            flag: Arc::new(Flag {
                woken: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
            registered: None,
        }
    }
}

impl<F: Future> Future for OwnWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let same_task = this.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        // Only a wake takes the task's waker out of `flag.task`, and it sets
        // `woken` first: while `woken` is unset, the waker registered last
        // is still there to be woken.
        if same_task && !this.flag.woken.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        // Registered before the flag is read, so that a wake between the
        // two is not lost.
        this.flag.task.register(cx.waker());
        if !same_task {
            *this.registered = Some(cx.waker().clone());
        }
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(Arc::clone(this.flag));
        this.future.poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set, and wakes through the
    /// waker it was last polled with when told to.
    #[derive(Default)]
    struct Probe {
        polls: AtomicUsize,
        ready: AtomicBool,
        waker: parking_lot::Mutex<Option<Waker>>,
    }

    struct Watched(Arc<Probe>);

    impl Future for Watched {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.0.polls.fetch_add(1, Ordering::SeqCst);
            *self.0.waker.lock() = Some(cx.waker().clone());
            if self.0.ready.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[derive(Default)]
    struct TaskWakes(AtomicUsize);

    impl Wake for TaskWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A probe to watch, and a task's waker counting its wakes.
    fn probe_and_task() -> (Arc<Probe>, Arc<TaskWakes>, Waker) {
        let wakes = Arc::new(TaskWakes::default());
        let task = Waker::from(Arc::clone(&wakes));
        (Arc::new(Probe::default()), wakes, task)
    }

    #[test]
    fn polled_first_then_only_after_its_own_wake() {
        let (probe, wakes, task) = probe_and_task();
        let mut cx = Context::from_waker(&task);
        let mut own = std::pin::pin!(OwnWake::new(Watched(Arc::clone(&probe))));

        assert!(own.as_mut().poll(&mut cx).is_pending());
        assert_eq!(probe.polls.load(Ordering::SeqCst), 1, "polled the first time");
        for _ in 0..10 {
            assert!(own.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(probe.polls.load(Ordering::SeqCst), 1, "not polled for others' wakes");

        probe.ready.store(true, Ordering::SeqCst);
        let inner = probe.waker.lock().take().expect("registered a waker");
        inner.wake();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "its wake reaches the task");
        assert!(own.as_mut().poll(&mut cx).is_ready());
        assert_eq!(probe.polls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn every_wake_reaches_the_task_and_a_new_task_waker_is_used() {
        let (probe, wakes, task) = probe_and_task();
        let mut cx = Context::from_waker(&task);
        let mut own = std::pin::pin!(OwnWake::new(Watched(Arc::clone(&probe))));
        assert!(own.as_mut().poll(&mut cx).is_pending());

        // Woken, polled, not ready: the next wake must reach the task too.
        for round in 1..=3 {
            let inner = probe.waker.lock().take().expect("registered a waker");
            inner.wake();
            assert_eq!(wakes.0.load(Ordering::SeqCst), round, "wake {round} reaches the task");
            // Others' wakes in between change nothing.
            assert!(own.as_mut().poll(&mut cx).is_pending());
            assert!(own.as_mut().poll(&mut cx).is_pending());
            assert_eq!(probe.polls.load(Ordering::SeqCst), round + 1);
        }

        // Polled from another task: its waker is the one woken from now on.
        let other = Arc::new(TaskWakes::default());
        let other_task = Waker::from(Arc::clone(&other));
        assert!(own.as_mut().poll(&mut Context::from_waker(&other_task)).is_pending());
        let inner = probe.waker.lock().take().expect("registered a waker");
        inner.wake();
        assert_eq!(other.0.load(Ordering::SeqCst), 1, "the new task is woken");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 3, "the old one is not");
        probe.ready.store(true, Ordering::SeqCst);
        assert!(own.as_mut().poll(&mut Context::from_waker(&other_task)).is_ready());
    }
}
