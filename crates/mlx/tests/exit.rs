//! A process that ends while MLX still has work queued ends cleanly.
//!
//! MLX never joins its stream threads (it leaks its scheduler on purpose), so without a drain
//! they go on running queued tasks while the process's exit handlers tear down the libraries
//! under them: OpenBLAS's shutdown unmaps the buffers of a matrix product in flight
//! (SIGSEGV in sgemm), or its thread join hangs; in `cortex run`, whose `generate` leaves its
//! last queued step unread when it stops, glibc reported heap corruption ("corrupted
//! double-linked list"). Whether a given exit hits a library mid-task is a race (about one
//! exit in ten with this workload before the drain), so the test exits many times.
use cortex_mlx::{ops, Array, Dtype};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "CORTEX_MLX_EXIT_CHILD";
const EXITS: usize = 40;

#[test]
fn exiting_with_work_queued_is_clean() {
    if std::env::var_os(CHILD).is_some() {
        queue_work_and_exit();
    }
    let exe = std::env::current_exe().unwrap();
    for run in 0..EXITS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "exiting_with_work_queued_is_clean",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // a hang at exit is a failure too (a generous bound: the work takes well under 1 s)
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        match status {
            Some(s) => assert!(s.success(), "exit {run} of {EXITS}: {s:?}"),
            None => panic!("exit {run} of {EXITS} hung"),
        }
    }
}

/// Queues a long chain of small matrix products (OpenBLAS) and exits at once without
/// reading the result.
fn queue_work_and_exit() -> ! {
    let n = 64;
    let w: Vec<f32> = (0..n * n).map(|i| ((i % 7) as f32 - 3.0) / 64.0).collect();
    let w = Array::from_slice(&w, &[n, n]).unwrap();
    let mut x = Array::ones(&[n, n], Dtype::Float32).unwrap();
    for i in 0..3000 {
        x = x
            .matmul(&w)
            .unwrap()
            .tanh()
            .unwrap()
            .add_scalar(0.5)
            .unwrap();
        if i % 100 == 99 {
            ops::async_eval([&x]).unwrap();
        }
    }
    std::process::exit(0);
}
