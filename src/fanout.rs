//! Low-latency fan-out of a few short jobs: the graph walks of one hnsw query, a fraction of a
//! millisecond each.
//!
//! The thread pool's workers go to sleep a few microseconds after their last job, and waking a
//! sleeping core costs tens of microseconds on a virtual machine, as much as a walk saves by
//! running beside another. So the helpers here wait for their next job by spinning, yielding
//! the core to any other runnable thread, for [`SPIN`] after each job, and only then sleep. A
//! stream of queries keeps them awake; an idle process lets them sleep.
//!
//! A caller never waits for a busy helper: when another caller holds it (several threads
//! searching at once), the caller runs that share of the jobs itself.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a helper spins for its next job before it sleeps.
pub const SPIN: Duration = Duration::from_millis(2);

/// One share of a fan-out, on the stack of the caller, which waits for `done` before it
/// returns (or unwinds).
struct Task<'a> {
    job: &'a (dyn Fn() + Sync),
    done: AtomicBool,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

struct Helper {
    /// The task to run next, or null.
    slot: AtomicPtr<Task<'static>>,
    /// Whether a caller holds this helper (from claiming it until its task is done).
    claimed: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
}

fn helpers() -> &'static [&'static Helper] {
    static HELPERS: OnceLock<Vec<&'static Helper>> = OnceLock::new();
    HELPERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (1..cores.min(8))
            .filter_map(|i| {
                let helper: &'static Helper = Box::leak(Box::new(Helper {
                    slot: AtomicPtr::new(std::ptr::null_mut()),
                    claimed: AtomicBool::new(false),
                    sleep: Mutex::new(()),
                    wake: Condvar::new(),
                }));
                // A helper that cannot be started is left out; its share runs on the caller.
                std::thread::Builder::new()
                    .name(format!("probelog-fanout-{i}"))
                    .spawn(move || helper_loop(helper))
                    .ok()
                    .map(|_| helper)
            })
            .collect()
    })
}

fn helper_loop(h: &'static Helper) -> ! {
    loop {
        let task = wait_for_task(h);
        // SAFETY: a caller put this pointer in the slot and does not return before `done` is
        // set (see `Waiter`), so the task and what its job borrows are alive until the store
        // below, after which this thread does not touch them.
        let task = unsafe { &*task };
        let outcome = catch_unwind(AssertUnwindSafe(|| (task.job)()));
        if let Err(payload) = outcome {
            *task.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(payload);
        }
        task.done.store(true, Ordering::Release);
    }
}

/// Spins for the next task for up to [`SPIN`], then sleeps until a caller wakes it.
fn wait_for_task(h: &Helper) -> *const Task<'static> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let t = h.slot.swap(std::ptr::null_mut(), Ordering::Acquire);
        if !t.is_null() {
            return t;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) {
            if start.elapsed() > SPIN {
                let mut guard = h.sleep.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    let t = h.slot.swap(std::ptr::null_mut(), Ordering::Acquire);
                    if !t.is_null() {
                        return t;
                    }
                    guard = h.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
            }
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Waits, also while unwinding, until the helper has finished the caller's task; then frees the
/// helper for other callers.
struct Waiter<'t, 'a> {
    helper: &'static Helper,
    task: &'t Task<'a>,
}

impl Drop for Waiter<'_, '_> {
    fn drop(&mut self) {
        let mut spins = 0u32;
        while !self.task.done.load(Ordering::Acquire) {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        self.helper.claimed.store(false, Ordering::Release);
    }
}

/// `f(0)`, ..., `f(n - 1)`, in that order, computed in parallel: the calling thread takes one
/// share, each free helper another. For jobs of a fraction of a millisecond; a panic in any job
/// is raised again here, after all have finished.
pub fn run<R: Send>(n: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    if n <= 1 {
        return (0..n).map(&f).collect();
    }
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let free: Vec<&'static Helper> = helpers()
        .iter()
        .take(n - 1)
        .filter(|h| {
            h.claimed
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
        .copied()
        .collect();
    let shares = free.len() + 1;
    let panic = run_shares(&free, shares, &|s: usize| {
        for i in (s..n).step_by(shares) {
            let r = f(i);
            *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        }
    });
    if let Some(payload) = panic {
        resume_unwind(payload);
    }
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every share ran")
        })
        .collect()
}

/// Runs `share(1..shares)` on the claimed helpers and `share(0)` here; waits for all of them,
/// also when `share(0)` panics. Returns the first helper panic.
fn run_shares(
    free: &[&'static Helper],
    shares: usize,
    share: &(dyn Fn(usize) + Sync),
) -> Option<Box<dyn Any + Send>> {
    let jobs: Vec<Box<dyn Fn() + Sync + '_>> = (1..shares)
        .map(|s| Box::new(move || share(s)) as Box<dyn Fn() + Sync + '_>)
        .collect();
    let tasks: Vec<Task<'_>> = jobs
        .iter()
        .map(|job| Task {
            job: job.as_ref(),
            done: AtomicBool::new(false),
            panic: Mutex::new(None),
        })
        .collect();
    {
        let mut waiters = Vec::with_capacity(free.len());
        for (helper, task) in free.iter().zip(&tasks) {
            // The waiter exists before the helper can see the task, so this function cannot
            // return or unwind while the helper may still use it: that is what makes handing
            // the helper a `'static` pointer to a task that borrows this stack sound.
            waiters.push(Waiter { helper, task });
            let ptr = task as *const Task<'_> as *mut Task<'static>;
            helper.slot.store(ptr, Ordering::Release);
            // A helper that is going to sleep looks at the slot once more while it holds this
            // lock, then waits on `wake`, which releases it. Taking the lock after the store
            // means the helper either sees the task or is already waiting for this notice.
            drop(helper.sleep.lock().unwrap_or_else(|e| e.into_inner()));
            helper.wake.notify_one();
        }
        share(0);
        // Dropping the waiters waits for every helper's share.
    }
    tasks
        .iter()
        .find_map(|task| task.panic.lock().unwrap_or_else(|e| e.into_inner()).take())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_job_once_in_order() {
        for n in [0usize, 1, 2, 3, 7, 20] {
            let calls: Vec<std::sync::atomic::AtomicUsize> = (0..n)
                .map(|_| std::sync::atomic::AtomicUsize::new(0))
                .collect();
            let got = run(n, |i| {
                calls[i].fetch_add(1, Ordering::Relaxed);
                i * 10
            });
            assert_eq!(got, (0..n).map(|i| i * 10).collect::<Vec<_>>());
            assert!(calls.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn callers_on_many_threads_each_get_their_own_results() {
        std::thread::scope(|s| {
            for t in 0..6usize {
                s.spawn(move || {
                    for round in 0..200usize {
                        let got = run(3, |i| t * 1000 + round * 3 + i);
                        assert_eq!(
                            got,
                            vec![
                                t * 1000 + round * 3,
                                t * 1000 + round * 3 + 1,
                                t * 1000 + round * 3 + 2
                            ]
                        );
                    }
                });
            }
        });
    }

    #[test]
    fn a_panic_in_a_job_reaches_the_caller_after_the_helpers_finish() {
        // The caller's own share panics at once; a helper's share must still be finished
        // before the panic leaves `run`, because it borrows the caller's stack. (Another test
        // may hold the helper, and then the caller runs both shares and never reaches job 1:
        // try until a helper took it.)
        let mut helped = false;
        for _ in 0..200 {
            let started = AtomicBool::new(false);
            let finished = AtomicBool::new(false);
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                run(2, |i| {
                    if i == 0 {
                        panic!("job 0");
                    }
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(10));
                    finished.store(true, Ordering::SeqCst);
                })
            }));
            assert!(outcome.is_err());
            let (started, finished) = (started.into_inner(), finished.into_inner());
            assert_eq!(
                started, finished,
                "a helper's job ran to its end before the panic left"
            );
            if started {
                helped = true;
                break;
            }
        }
        assert!(helped || helpers().is_empty(), "no helper ever took job 1");
        // A panic on a helper reaches the caller too, and the helpers are free again.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run(2, |i| {
                if i == 1 {
                    panic!("job 1");
                }
            })
        }));
        assert!(outcome.is_err());
        assert_eq!(run(2, |i| i), vec![0, 1]);
    }

    #[test]
    fn helpers_that_slept_wake_for_the_next_job() {
        assert_eq!(run(2, |i| i + 1), vec![1, 2]);
        std::thread::sleep(SPIN * 3);
        assert_eq!(run(2, |i| i + 2), vec![2, 3]);
    }
}
