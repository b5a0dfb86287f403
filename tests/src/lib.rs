//! Helpers of the end-to-end suite. The suite itself lives in `tests/e2e.rs`: today the whole
//! shared road with an oracle in place of the network; train -> export -> tract -> compare once
//! the trainer and exporter exist.
