//! The thesis's chapter 7 experiments (sections 7.3–7.4) on a devnet whose
//! links are emulated to match the thesis's: a `lan` profile (1 ms round
//! trip, 1 Gbit/s) and a `cloud` profile (110 ms, 160 Mbit/s, Milan →
//! Iowa). Each experiment writes its raw data (`data/*.csv`) and a chart
//! (`charts/*.png`), and [`report::write`] puts our figures beside the
//! thesis's and the link's physical limit in `REPORT.md`.
//!
//! The `edge-bench` binary runs them all (`--quick` for the reduced run the
//! test suite uses); `scripts/bench` regenerates the committed report.

pub mod chart;
pub mod experiments;
pub mod net;
pub mod output;
pub mod report;
