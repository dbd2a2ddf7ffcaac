//! Thread-count control shared by every kernel.
//!
//! Kernels never touch rayon's global pool. `threads == 1` runs on the calling thread with no
//! pool at all (the default inside DataLoader workers); other counts use a pool cached per
//! count. Pools are tagged with the process id: after `fork()` the child finds a stale tag,
//! abandons the parent's pools (their threads do not exist in the child) and builds new ones,
//! so forked DataLoader workers never deadlock.

use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use crate::{CoreError, Result};

struct Pools {
    pid: u32,
    pools: Vec<(usize, Arc<rayon::ThreadPool>)>,
}

fn pools() -> &'static Mutex<Pools> {
    static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();
    POOLS.get_or_init(|| {
        Mutex::new(Pools {
            pid: std::process::id(),
            pools: Vec::new(),
        })
    })
}

/// Number of logical CPUs this process may use (at least 1), read once per process.
///
/// `std::thread::available_parallelism` reads the affinity mask and the cgroup quota files on
/// every call — about 11 µs, as much as a whole 32-row masking batch, and every call with the
/// default `num_threads = 0` asked. The count is cached with the process id, so a forked
/// DataLoader worker reads its own. Only thread counts depend on it, never an output.
pub fn available_threads() -> usize {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CPUS: AtomicU64 = AtomicU64::new(0); // `pid << 32 | count`, 0 until read
    let pid = u64::from(std::process::id());
    let cached = CPUS.load(Ordering::Relaxed);
    if cached != 0 && cached >> 32 == pid {
        return (cached & 0xffff_ffff) as usize;
    }
    let count = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, u32::MAX as usize);
    CPUS.store(pid << 32 | count as u64, Ordering::Relaxed);
    count
}

/// Resolves a requested count: 0 means "all logical CPUs".
pub fn resolve_threads(requested: usize) -> usize {
    if requested == 0 {
        available_threads()
    } else {
        requested
    }
}

/// Threads worth using for `work` units when each thread should get at least `grain` of
/// them (handing work to a pool costs microseconds; small batches run on the caller).
pub fn threads_for(requested: usize, work: usize, grain: usize) -> usize {
    resolve_threads(requested).min((work / grain.max(1)).max(1))
}

fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    // A poisoned lock only means another thread panicked while holding it; the data is a
    // cache and stays usable.
    let mut guard = pools().lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    if guard.pid != pid {
        // Forked child: the parent's worker threads are gone. Dropping the pools could wait on
        // them, so leak them instead (a few KiB, once per fork).
        let stale = std::mem::take(&mut guard.pools);
        std::mem::forget(stale);
        guard.pid = pid;
    }
    if let Some((_, p)) = guard.pools.iter().find(|(n, _)| *n == threads) {
        return Ok(Arc::clone(p));
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("lmobjectives-{i}"))
        .build()
        .map_err(|e| CoreError::Internal(format!("could not start {threads} threads: {e}")))?;
    let p = Arc::new(p);
    guard.pools.push((threads, Arc::clone(&p)));
    Ok(p)
}

/// Calls `f(i, &mut items[i])` for every item, on `threads` threads (0 = all CPUs).
///
/// `f` must be infallible: validate before calling, so that errors are reported
/// deterministically (the first bad row, not whichever thread failed first).
pub fn for_each_mut<T, F>(threads: usize, items: &mut [T], f: F) -> Result<()>
where
    T: Send,
    F: Fn(usize, &mut T) + Sync + Send,
{
    let threads = resolve_threads(threads);
    if threads <= 1 || items.len() <= 1 {
        items.iter_mut().enumerate().for_each(|(i, t)| f(i, t));
        return Ok(());
    }
    let p = pool(threads)?;
    p.install(|| items.par_iter_mut().enumerate().for_each(|(i, t)| f(i, t)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_cpu_count_is_the_systems() {
        let system = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(available_threads(), system); // first call reads it
        assert_eq!(available_threads(), system); // later calls from the cache
        assert_eq!(resolve_threads(0), system);
        assert_eq!(threads_for(0, 10, 4), 2.min(system));
        assert_eq!(threads_for(0, 3, 4), 1);
    }

    #[test]
    fn same_result_for_any_thread_count() {
        let run = |threads| {
            let mut v: Vec<u64> = (0..1000).collect();
            for_each_mut(threads, &mut v, |i, x| *x = *x * 3 + i as u64).unwrap();
            v
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(4));
        assert_eq!(one, run(0));
    }

    #[test]
    fn small_work_runs_on_fewer_threads() {
        assert_eq!(threads_for(4, 10, 100), 1);
        assert_eq!(threads_for(4, 250, 100), 2);
        assert_eq!(threads_for(2, 10_000, 100), 2);
        assert_eq!(threads_for(1, 10_000, 100), 1);
    }

    #[test]
    fn resolves_zero_to_all_cpus() {
        assert_eq!(resolve_threads(0), available_threads());
        assert_eq!(resolve_threads(3), 3);
    }
}
