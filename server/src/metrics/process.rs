//! `process_*`: the server process as Prometheus' own clients describe
//! theirs (client_golang's process collector: the same names, units and
//! help), read from `/proc/self` at scrape time with the procfs crate. A
//! value that cannot be read is left out, not faked.

use procfs::process::{LimitValue, Process};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Registers what `/proc/self` says now.
pub(super) fn register(registry: &mut Registry) {
    let Ok(me) = Process::myself() else { return };
    let ticks = procfs::ticks_per_second() as f64;
    if let Ok(stat) = me.stat() {
        let cpu = (stat.utime + stat.stime) as f64 / ticks;
        registry.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            ConstCounter::new(cpu),
        );
        registry.register(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            ConstGauge::new(stat.vsize as i64),
        );
        let rss = stat.rss.saturating_mul(procfs::page_size());
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            ConstGauge::new(rss as i64),
        );
        registry.register(
            "process_threads",
            "Number of OS threads in the process",
            ConstGauge::new(stat.num_threads),
        );
        if let Ok(boot) = procfs::boot_time_secs() {
            let start = boot as f64 + stat.starttime as f64 / ticks;
            registry.register(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                ConstGauge::new(start),
            );
        }
    }
    if let Ok(open) = me.fd_count() {
        registry.register(
            "process_open_fds",
            "Number of open file descriptors",
            ConstGauge::new(open as i64),
        );
    }
    if let Ok(limits) = me.limits()
        && let LimitValue::Value(max) = limits.max_open_files.soft_limit
    {
        registry.register(
            "process_max_fds",
            "Maximum number of open file descriptors",
            ConstGauge::new(max as i64),
        );
    }
}
