//! `--device auto|cpu|cuda[:i]`: parsing (every build) and choosing the libtorch device.

use std::fmt;
use std::str::FromStr;

/// A device as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceArg {
    /// CUDA device 0 when libtorch sees one, else the CPU (said on stderr).
    #[default]
    Auto,
    Cpu,
    /// A CUDA device: `cuda` is device 0.
    Cuda(usize),
}

impl FromStr for DeviceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "unknown device {}: expected auto, cpu, cuda or cuda:INDEX",
                crate::output::excerpt(&format!("{s:?}"))
            )
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceArg::Auto),
            "cpu" => Ok(DeviceArg::Cpu),
            "cuda" | "gpu" => Ok(DeviceArg::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(i) if !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) => {
                    i.parse().map(DeviceArg::Cuda).map_err(|_| bad())
                }
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceArg::Auto => f.write_str("auto"),
            DeviceArg::Cpu => f.write_str("cpu"),
            DeviceArg::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// What libtorch reports about CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaInfo {
    /// Number of CUDA devices libtorch sees (0 when it was built or linked without CUDA).
    pub devices: usize,
}

/// The outcome of choosing a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Cpu,
    Cuda(usize),
    /// `auto` found no CUDA device: the CPU, and the caller says so.
    CpuFallback,
}

/// Chooses the device for `arg` given what CUDA offers (pure, so that it is testable anywhere).
pub fn choose(arg: DeviceArg, cuda: CudaInfo) -> Result<Choice, String> {
    match arg {
        DeviceArg::Cpu => Ok(Choice::Cpu),
        DeviceArg::Auto if cuda.devices > 0 => Ok(Choice::Cuda(0)),
        DeviceArg::Auto => Ok(Choice::CpuFallback),
        DeviceArg::Cuda(_) if cuda.devices == 0 => Err(format!(
            "--device {arg}: no CUDA device (or libtorch built without CUDA; on a CUDA machine build \
             with --features cuda)"
        )),
        DeviceArg::Cuda(i) if i >= cuda.devices => Err(format!(
            "--device {arg}: there {} only {} CUDA device{} (cuda:0..cuda:{})",
            if cuda.devices == 1 { "is" } else { "are" },
            cuda.devices,
            if cuda.devices == 1 { "" } else { "s" },
            cuda.devices - 1
        )),
        DeviceArg::Cuda(i) => Ok(Choice::Cuda(i)),
    }
}

/// The message printed on stderr when `auto` falls back to the CPU.
pub const FALLBACK_MESSAGE: &str = "no CUDA device (or libtorch built without CUDA); using CPU";

/// Resolves `arg` to a libtorch device, saying on stderr when `auto` falls back to the CPU.
#[cfg(feature = "torch")]
pub fn resolve(arg: DeviceArg) -> anyhow::Result<tch::Device> {
    let devices = if tch::Cuda::is_available() {
        usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
    } else {
        0
    };
    match choose(arg, CudaInfo { devices }).map_err(anyhow::Error::msg)? {
        Choice::Cpu => Ok(tch::Device::Cpu),
        Choice::CpuFallback => {
            eprintln!("{FALLBACK_MESSAGE}");
            Ok(tch::Device::Cpu)
        }
        Choice::Cuda(i) => Ok(tch::Device::Cuda(i)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("auto".parse(), Ok(DeviceArg::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceArg::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceArg::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceArg::Cuda(3)));
        for bad in [
            "", "cuda:", "cuda:-1", "cuda:x", "cuda:1:2", "tpu", "cuda:+1",
        ] {
            let e = bad.parse::<DeviceArg>().unwrap_err();
            assert!(e.contains("expected auto, cpu, cuda"), "{bad:?}: {e}");
        }
        assert_eq!(DeviceArg::Cuda(2).to_string(), "cuda:2");
        assert_eq!(
            "cuda:2".parse::<DeviceArg>().unwrap().to_string().parse(),
            Ok(DeviceArg::Cuda(2))
        );
    }

    #[test]
    fn chooses_a_device() {
        let none = CudaInfo { devices: 0 };
        let two = CudaInfo { devices: 2 };
        assert_eq!(choose(DeviceArg::Auto, none), Ok(Choice::CpuFallback));
        assert_eq!(choose(DeviceArg::Auto, two), Ok(Choice::Cuda(0)));
        assert_eq!(choose(DeviceArg::Cpu, two), Ok(Choice::Cpu));
        assert_eq!(choose(DeviceArg::Cuda(1), two), Ok(Choice::Cuda(1)));
        let e = choose(DeviceArg::Cuda(0), none).unwrap_err();
        assert!(e.contains("no CUDA device"), "{e}");
        let e = choose(DeviceArg::Cuda(2), two).unwrap_err();
        assert!(e.contains("only 2 CUDA devices"), "{e}");
    }
}
