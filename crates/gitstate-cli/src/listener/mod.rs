//! What `watch` serves, reading the runtime's [`View`](gitstate_runtime::View) and
//! deciding nothing: [`server`] (`/`, `/events`, `/metrics`, `/healthz`, `/readyz`,
//! `/status`), [`dashboard`] (the page and its live updates), [`metrics`] (the
//! OpenMetrics registry, an [`Observer`](gitstate_runtime::Observer) of the loop) and
//! [`webhook`] (push events from the forge, SPEC §13, which poke the controller).

pub mod actions;
pub mod auth;
pub mod csrf;
pub mod dashboard;
pub mod metrics;
pub mod server;
pub mod tls;
pub mod webhook;
