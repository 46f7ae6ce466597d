//! The measurement side of the binaries: `.hgrm` files, result summaries,
//! plots and the orchestration `fepbench` does.

pub mod baseline;
pub mod compare;
pub mod crelay;
pub mod engine;
pub mod hgrm;
pub mod knee;
pub mod kneerun;
pub mod machine;
pub mod pin;
pub mod plot;
pub mod procs;
pub mod recovery;
pub mod report;
pub mod run;
pub mod simsweep;
pub mod summary;
pub mod tcpstat;
pub mod wal;
