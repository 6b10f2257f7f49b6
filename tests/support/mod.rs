//! The test harness every integration test shares: one environment ([`env::Env`]: sandbox,
//! provider fakes, controller, API), one wait policy ([`wait`]), builders for Channels and
//! Secrets ([`build`]), log capture ([`logs`]), controller replicas as processes ([`replica`]),
//! the provider tests' factory ([`providers`]), and what the API, router and chart tests need
//! besides. `use support::*;` brings the common names.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code, unused_imports)]

pub mod airy;
pub mod api;
pub mod build;
pub mod chart;
pub mod configs;
pub mod env;
pub mod fakes;
pub mod kubectl;
pub mod logs;
pub mod pages;
pub mod providers;
pub mod replica;
pub mod router;
pub mod state;
pub mod token_fake;
pub mod wait;

pub use api::*;
pub use build::*;
pub use env::{sandbox, Env, Running, Sandboxed};
pub use fakes::{App, TwilioAccount, APP_SECRET, FLAGS_APP, FLAGS_TWILIO, TWILIO_TOKEN};
pub use logs::{log_text, logs};
pub use pages::section;
pub use providers::Lifecycle;
pub use replica::assert_running;
pub use state::*;
pub use wait::{
    consistently, create_retrying, eventually, eventually_ok, eventually_some, eventually_within,
    http_ready, KUBECTL_TIMEOUT, TIMEOUT,
};
