//! The tokio runtime of the proxy's binaries (`portico-proxy`, `portico standalone`), sized
//! for the CPUs the process is given.
//!
//! `std::thread::available_parallelism` counts the CPUs of the affinity mask (taskset,
//! cpusets) and the cgroup's CPU quota (a Kubernetes CPU limit). With one CPU the runtime
//! is a current-thread one: requests run on the main thread, with no worker thread, no
//! work-stealing queues and no cross-thread wake-ups (a multi-thread runtime with one worker
//! would spend that CPU on the same work plus the hand-offs). With more, a multi-thread
//! runtime with one worker per CPU. `TOKIO_WORKER_THREADS=N` forces a multi-thread runtime
//! with N workers (tokio's own variable), e.g. to compare the two.

use std::num::NonZeroUsize;

use tokio::runtime::{Builder, Runtime};

/// The variable tokio's multi-thread runtime reads for its worker count.
const WORKERS_VAR: &str = "TOKIO_WORKER_THREADS";

/// Which runtime [`build`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    CurrentThread,
    MultiThread { workers: usize },
}

/// The flavor for `cpus` available CPUs and the value of `TOKIO_WORKER_THREADS`, if set
/// (an unparsable or zero value is ignored, as tokio would not take it either).
pub fn flavor(cpus: usize, workers_var: Option<&str>) -> Flavor {
    match workers_var.and_then(|v| v.trim().parse::<NonZeroUsize>().ok()) {
        Some(workers) => Flavor::MultiThread {
            workers: workers.get(),
        },
        None if cpus <= 1 => Flavor::CurrentThread,
        None => Flavor::MultiThread { workers: cpus },
    }
}

/// The runtime for this process's CPUs (see the module doc), with I/O and time enabled.
pub fn build() -> std::io::Result<Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let var = std::env::var(WORKERS_VAR).ok();
    let mut builder = match flavor(cpus, var.as_deref()) {
        Flavor::CurrentThread => Builder::new_current_thread(),
        Flavor::MultiThread { workers } => {
            let mut builder = Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
    };
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cpu_runs_on_the_main_thread() {
        assert_eq!(flavor(1, None), Flavor::CurrentThread);
    }

    #[test]
    fn several_cpus_get_one_worker_each() {
        assert_eq!(flavor(4, None), Flavor::MultiThread { workers: 4 });
    }

    #[test]
    fn the_variable_forces_a_worker_count() {
        assert_eq!(flavor(1, Some("1")), Flavor::MultiThread { workers: 1 });
        assert_eq!(flavor(2, Some(" 3 ")), Flavor::MultiThread { workers: 3 });
        assert_eq!(flavor(1, Some("0")), Flavor::CurrentThread);
        assert_eq!(flavor(2, Some("many")), Flavor::MultiThread { workers: 2 });
    }
}
