//! The device the trainer runs on, as the workbench shows it: a readable name and the memory in use.
//!
//! On a GPU the memory is the device's (used = total - free, as `nvidia-smi` counts it: every process on the card);
//! on the CPU it is this process's resident set against the machine's RAM. Both are cheap queries that never wait
//! for queued work, so the trainer reads them once per statistics interval.

use candle_core::Device;
use serde::{Deserialize, Serialize};

/// Memory in use on the training device.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MemoryUse {
    /// Bytes in use: device memory on a GPU, this process's resident set on the CPU.
    pub used_bytes: u64,
    /// Bytes in all: the GPU's memory, or the machine's RAM.
    pub total_bytes: u64,
}

impl MemoryUse {
    /// `12.3/79.6 GiB`.
    pub fn display(&self) -> String {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        format!(
            "{:.1}/{:.1} GiB",
            gib(self.used_bytes),
            gib(self.total_bytes)
        )
    }
}

/// `cpu (2 threads)`, or `cuda:0 NVIDIA H100 80GB HBM3`.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
        #[cfg(feature = "cuda")]
        Device::Cuda(cuda) => {
            let ctx = cuda.cuda_stream().context().clone();
            match ctx.name() {
                Ok(name) => format!("cuda:{} {name}", ctx.ordinal()),
                Err(_) => format!("cuda:{}", ctx.ordinal()),
            }
        }
        other => format!("{other:?}"),
    }
}

/// Memory in use on `device`; `None` where it cannot be read.
pub fn memory_in_use(device: &Device) -> Option<MemoryUse> {
    match device {
        Device::Cpu => Some(MemoryUse {
            used_bytes: resident_bytes()?,
            total_bytes: ram_bytes()?,
        }),
        #[cfg(feature = "cuda")]
        Device::Cuda(cuda) => {
            let (free, total) = cuda.cuda_stream().context().mem_get_info().ok()?;
            Some(MemoryUse {
                used_bytes: total.saturating_sub(free) as u64,
                total_bytes: total as u64,
            })
        }
        _ => None,
    }
}

/// This process's resident set (`/proc/self/statm`, second field, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// The machine's RAM (`MemTotal` in `/proc/meminfo`, in KiB).
fn ram_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_memory_is_this_process_against_the_machine() {
        let m = memory_in_use(&Device::Cpu).expect("/proc is readable on Linux");
        assert!(m.used_bytes > 0 && m.used_bytes < m.total_bytes, "{m:?}");
        assert!(describe(&Device::Cpu).starts_with("cpu ("));
    }

    #[test]
    fn display_in_gib() {
        let m = MemoryUse {
            used_bytes: 3 << 29,
            total_bytes: 80 << 30,
        };
        assert_eq!(m.display(), "1.5/80.0 GiB");
    }
}
