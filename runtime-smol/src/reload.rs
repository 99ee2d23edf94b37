//! Hot reload (SIGHUP, `POST /admin/reload`): the config file and the
//! schema are read again and replace the running ones without closing a
//! connection.
//!
//! What is reloaded: `schema` (the file it names, read again) and the
//! `[grpc.*]` and `[mysql.*]` sections. An upstream whose section did not
//! change keeps its client (connections, streams, pool); a new or changed
//! one gets a new client, and the old one drains: the operations that
//! started on it keep it to their end. New operations use the new schema
//! and clients. Live operations are handed the new schema; the core decides
//! which end (`core/src/graphql/reload.rs`: those whose root field or
//! upstream is gone, with a `SCHEMA_RELOADED` error). The other sections
//! (listen, tls, auth, admin, limits, timeouts, testing, runtime) need a restart: a
//! change there is reported in the outcome and otherwise ignored.
//!
//! A reload that fails (the config or schema does not parse, a field does
//! not match its upstream, a file is missing) changes nothing; the reason,
//! with file and line, is logged and shown on `/admin` (`reload` in
//! `/admin/state`).

use crate::config::Config;
use crate::gateway::{Gateway, Live};
use crate::upstreams::Upstreams;
use std::sync::Arc;
use terminus_core::graphql::Schema;

/// Reloads `gateway` from the config file it was started with. Returns a
/// one-line summary, or why nothing changed.
pub async fn reload(gateway: &Arc<Gateway>) -> Result<String, String> {
    // One reload at a time; a second waits for the first.
    let _one = gateway.reloading.lock().await;
    let outcome = reload_once(gateway).await;
    let mut status = gateway
        .reload_status
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match &outcome {
        Ok(summary) => {
            status.ok_total += 1;
            tracing::info!(%summary, "reload: done");
        }
        Err(why) => {
            status.failed_total += 1;
            tracing::error!(error = %why, "reload failed: nothing changed");
        }
    }
    status.last = Some(outcome.clone());
    outcome
}

async fn reload_once(gateway: &Arc<Gateway>) -> Result<String, String> {
    let path = gateway
        .config_path
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or("this gateway was not started from a config file (terminus serve --config FILE): nothing to reload")?;
    let config = Config::load(&path).map_err(|e| e.to_string())?;
    let (schema, mut upstreams) = load(&config)?;
    // A new hub for `@shared` streams (limits are not reloaded): new
    // subscribers share new streams; the old hub's streams end with their
    // last subscriber.
    let old = gateway.live();
    upstreams.set_shared_after(old.upstreams.shared(), &gateway.config.limits);
    let (kept, changed) = upstreams.keep_unchanged(&config, &old.config, &old.upstreams);
    check(&config, &schema, &upstreams).await?;
    let restart = needs_restart(&gateway.config, &config);
    let removed: Vec<String> = old
        .upstream_names
        .grpc
        .iter()
        .filter(|name| upstreams.grpc(name).is_none())
        .map(|name| format!("grpc.{name}"))
        .chain(
            old.upstream_names
                .sql
                .iter()
                .filter(|name| upstreams.mysql(name).is_none())
                .map(|name| format!("mysql.{name}")),
        )
        .collect();
    let generation = old.generation + 1;
    drop(old);
    gateway.swap_live(Live::new(config, schema, upstreams, generation));
    let mut summary = format!(
        "generation {generation}: upstreams kept [{}], new or changed [{}], removed [{}]",
        kept.join(", "),
        changed.join(", "),
        removed.join(", ")
    );
    if !restart.is_empty() {
        summary.push_str(&format!(
            "; changed but not reloaded (restart to apply): {}",
            restart.join(", ")
        ));
        tracing::warn!(sections = %restart.join(", "), "reload: these sections need a restart");
    }
    Ok(summary)
}

/// The sections of `new` that differ from the running `old` and that a
/// reload does not apply.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut sections = Vec::new();
    if old.listen != new.listen {
        sections.push("listen");
    }
    if differs(&old.tls, &new.tls) {
        sections.push("tls");
    }
    if differs(&old.auth, &new.auth) {
        sections.push("auth");
    }
    if differs(&old.admin, &new.admin) {
        sections.push("admin");
    }
    if differs(&old.limits, &new.limits) {
        sections.push("limits");
    }
    if differs(&old.timeouts, &new.timeouts) {
        sections.push("timeouts");
    }
    if differs(&old.testing, &new.testing) {
        sections.push("testing");
    }
    if old.runtime.threads != new.runtime.threads {
        sections.push("runtime");
    }
    sections
}

/// Reads and parses `config.schema`, builds the upstreams `config` names
/// and checks every `@grpc` field against its upstream's descriptors: what
/// start-up (runtime-smol/src/server.rs) and a reload both do first. Errors
/// name the file and line where there is one.
pub(crate) fn load(config: &Config) -> Result<(Schema, Upstreams), String> {
    let file = config.schema.display().to_string();
    let sdl = std::fs::read_to_string(&config.schema)
        .map_err(|e| format!("{file}: cannot read the schema: {e}"))?;
    let schema = Schema::parse(&sdl, &file).map_err(|e| e.to_string())?;
    let upstreams = Upstreams::from_config(config)?;
    // Every @grpc field against its upstream's compiled descriptors: a
    // mismatch refuses to start, with file:line:col and the fix.
    crate::grpc::check::check_schema(&sdl, &file, &|name| {
        upstreams
            .grpc(name)
            .map(|upstream| upstream.descriptors().clone())
    })
    .map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok((schema, upstreams))
}

/// Checks that every upstream `schema` names is configured and that its SQL
/// fields match their statements' columns: start-up and reload.
pub(crate) async fn check(
    config: &Config,
    schema: &Schema,
    upstreams: &Upstreams,
) -> Result<(), String> {
    let names = schema.upstream_names();
    for name in &names.grpc {
        if upstreams.grpc(name).is_none() {
            return Err(format!(
                "{}: the schema uses gRPC upstream {name:?}, but the config has no [grpc.{name}]",
                config.schema.display()
            ));
        }
    }
    for name in &names.sql {
        if upstreams.mysql(name).is_none() {
            return Err(format!(
                "{}: the schema uses MySQL database {name:?}, but the config has no [mysql.{name}]",
                config.schema.display()
            ));
        }
    }
    // SQL fields against their statements' columns (upstreams.rs).
    upstreams.check_columns(schema, &config.schema).await
}
