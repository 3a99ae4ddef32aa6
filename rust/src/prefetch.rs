//! Ordered prefetching on worker threads with a bounded window.
//!
//! Jobs `start..end` are claimed by `threads` workers in order; a worker may claim job `k` only
//! while `k < consumed + capacity`, so at most `capacity` results exist (plus the one the consumer
//! holds). Results are delivered strictly in job order, whatever the thread timing, so batch
//! contents depend only on the plan. A panic in a job becomes an `Internal` error for that job.
//! Dropping the pipeline cancels it and joins the workers (in-flight jobs finish first).
use crate::error::{panic_message, Error, ErrorKind, Location, Result};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub type Job<T> = Arc<dyn Fn(usize) -> Result<T> + Send + Sync>;

struct State<T> {
    next_job: usize,
    next_out: usize,
    end: usize,
    capacity: usize,
    results: BTreeMap<usize, Result<T>>,
    cancelled: bool,
    live_workers: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
}

pub struct Pipeline<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    threads: Vec<JoinHandle<()>>,
    /// Process that started the workers; after fork() a child has none of them.
    pid: u32,
}

pub enum Next<T> {
    Item(Result<T>),
    Done,
    Timeout,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Send + 'static> Pipeline<T> {
    pub fn start(start: usize, end: usize, capacity: usize, threads: usize, job: Job<T>) -> Result<Self> {
        let capacity = capacity.max(1);
        let threads = threads.max(1).min(end.saturating_sub(start).max(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_job: start,
                next_out: start,
                end,
                capacity,
                results: BTreeMap::new(),
                cancelled: false,
                live_workers: threads,
            }),
            cv: Condvar::new(),
        });
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let sh = shared.clone();
            let job = job.clone();
            let h = std::thread::Builder::new()
                .name(format!("vqfast-io-{i}"))
                .spawn(move || worker(sh, job))
                .map_err(|e| Error::new(ErrorKind::Internal, "", Location::None, format!("cannot spawn a loader thread: {e}")))?;
            handles.push(h);
        }
        Ok(Pipeline { shared, threads: handles, pid: std::process::id() })
    }

    /// Next result in order; `Timeout` lets the caller check for signals and call again.
    pub fn next(&self, timeout: Duration) -> Next<T> {
        let mut st = lock(&self.shared.state);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if st.next_out >= st.end {
                return Next::Done;
            }
            let k = st.next_out;
            if let Some(r) = st.results.remove(&k) {
                st.next_out += 1;
                self.shared.cv.notify_all();
                return Next::Item(r);
            }
            if st.cancelled {
                return Next::Item(Err(Error::new(ErrorKind::Closed, "", Location::None, "the loader was closed")));
            }
            if st.live_workers == 0 {
                return Next::Item(Err(Error::internal(format!("loader threads exited before producing batch {k}"))));
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Next::Timeout;
            }
            st = self.shared.cv.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    pub fn cancel(&self) {
        lock(&self.shared.state).cancelled = true;
        self.shared.cv.notify_all();
    }
}

impl<T: Send + 'static> Drop for Pipeline<T> {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // A forked child: the workers do not exist here and the lock may have been held at
            // fork time. Touch nothing (leak the shared state) rather than hang.
            std::mem::forget(std::mem::take(&mut self.threads));
            std::mem::forget(self.shared.clone());
            return;
        }
        self.cancel();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker<T: Send + 'static>(sh: Arc<Shared<T>>, job: Job<T>) {
    loop {
        let k = {
            let mut st = lock(&sh.state);
            loop {
                if st.cancelled || st.next_job >= st.end {
                    st.live_workers -= 1;
                    sh.cv.notify_all();
                    return;
                }
                if st.next_job < st.next_out + st.capacity {
                    break;
                }
                st = sh.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            st.next_job += 1;
            st.next_job - 1
        };
        let r = match catch_unwind(AssertUnwindSafe(|| job(k))) {
            Ok(r) => r,
            Err(p) => Err(Error::internal(format!("panic in loader thread while building batch {k}: {}", panic_message(&*p)))),
        };
        let mut st = lock(&sh.state);
        if !st.cancelled {
            st.results.insert(k, r);
        }
        sh.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn collect(p: &Pipeline<usize>) -> Vec<Result<usize>> {
        let mut out = Vec::new();
        loop {
            match p.next(Duration::from_secs(10)) {
                Next::Item(r) => out.push(r),
                Next::Done => return out,
                Next::Timeout => panic!("timeout"),
            }
        }
    }

    #[test]
    fn in_order_despite_timing() {
        let job: Job<usize> = Arc::new(|k| {
            std::thread::sleep(Duration::from_micros(((k * 7919) % 13) as u64 * 100));
            Ok(k * 10)
        });
        let p = Pipeline::start(3, 40, 4, 4, job).unwrap();
        let out: Vec<usize> = collect(&p).into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(out, (3..40).map(|k| k * 10).collect::<Vec<_>>());
    }

    #[test]
    fn window_is_bounded() {
        let started = Arc::new(AtomicUsize::new(0));
        let s2 = started.clone();
        let job: Job<usize> = Arc::new(move |k| {
            s2.fetch_add(1, Ordering::SeqCst);
            Ok(k)
        });
        let p = Pipeline::start(0, 100, 3, 2, job).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(started.load(Ordering::SeqCst), 3);
        let _ = p.next(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(started.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn panics_become_errors_and_later_jobs_continue() {
        let job: Job<usize> = Arc::new(|k| if k == 2 { panic!("boom at {k}") } else { Ok(k) });
        let p = Pipeline::start(0, 5, 2, 2, job).unwrap();
        let out = collect(&p);
        assert_eq!(out.len(), 5);
        let e = out[2].as_ref().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.reason.contains("boom at 2"));
        assert_eq!(*out[4].as_ref().unwrap(), 4);
    }

    #[test]
    fn drop_mid_stream_does_not_hang() {
        let job: Job<usize> = Arc::new(|k| {
            std::thread::sleep(Duration::from_millis(5));
            Ok(k)
        });
        let p = Pipeline::start(0, 1_000_000, 4, 2, job).unwrap();
        let _ = p.next(Duration::from_secs(1));
        let t = std::time::Instant::now();
        drop(p);
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
