//! A real multi-node hierarchy on one machine, without Docker or
//! Kubernetes: per node a `redis-server` (in memory, password set) and an
//! HTTP gateway that speaks the OpenFaaS API used by faas-cli and the
//! deployer, running deployed functions as local processes built from the
//! same template (SPEC section 9).
//!
//! The `edge-devnet` binary: `up`, `status`, `down`, `build`. Modules, one
//! per concept: [`supervisor`] (the process that owns a devnet),
//! [`gateway`] (the OpenFaaS API and the call proxy), [`functions`]
//! (function processes), [`cpu`] (CPU limits), [`link`] and [`topology`]
//! (emulated links), [`cron`] (the cron connector), [`images`] (`build`
//! and the image registry), [`redis`], [`state`] (the state file).

pub mod cli;
pub mod cpu;
pub mod cron;
pub mod functions;
pub mod gateway;
pub mod images;
pub mod link;
pub mod redis;
pub mod state;
pub mod supervisor;
pub mod topology;
