//! `backstop release ship` and `backstop release ships`: one release through its service's
//! environment waves, and following it.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::Result;
use backstop_api::ships::StartShip;
use backstop_core::duration::format_duration;
use backstop_core::format_ms;
use backstop_core::ship::{Ship, ShipPhase, WaveRun, WaveState};

use super::rollouts::{FollowArgs, follow_to_end};
use crate::client::{ApiArgs, Query};
use crate::output::Render;

/// `backstop release ship SERVICE --version V [--wait]`.
pub async fn ship(
    api: &ApiArgs,
    service: String,
    version: String,
    reason: Option<String>,
    wait: bool,
    how: FollowArgs,
) -> Result<i32> {
    let body = StartShip {
        service,
        version,
        reason,
    };
    let ship: Ship = api.client()?.post("/api/v1/ships", &body).await?;
    if !wait {
        api.print(&ship);
        return Ok(0);
    }
    follow(api, &ship.id, how.retry_for).await
}

/// `backstop release ships [ID] [--service S] [--all] [--watch]`.
pub async fn ships(
    api: &ApiArgs,
    id: Option<String>,
    service: Option<String>,
    all: bool,
    watch: bool,
    how: FollowArgs,
) -> Result<i32> {
    match id {
        Some(id) if watch => follow(api, &id, how.retry_for).await,
        Some(id) => {
            api.get_and_print::<Ship>(&format!("/api/v1/ships/{id}"))
                .await?;
            Ok(0)
        }
        None => {
            let path = Query::new("/api/v1/ships")
                .param_if("service", service)
                .param_if("all", all.then_some("true"));
            api.get_and_print::<Vec<Ship>>(path.as_str()).await?;
            Ok(0)
        }
    }
}

/// `backstop release stop-ship ID --reason R`: asks, then follows until the controller has
/// stopped it (exit 0), or it ended otherwise meanwhile (exit 1).
pub async fn stop(api: &ApiArgs, id: &str, reason: String, how: FollowArgs) -> Result<i32> {
    let body = backstop_api::rollouts::Reason { reason };
    let _: Ship = api
        .client()?
        .post(&format!("/api/v1/ships/{id}/stop"), &body)
        .await?;
    let path = format!("/api/v1/ships/{id}");
    follow_to_end(
        api,
        &path,
        how.retry_for,
        progress_line,
        |ship: &Ship| !ship.phase.is_active(),
        |ship: &Ship| i32::from(ship.phase != ShipPhase::Stopped),
    )
    .await
}

/// What `--wait` and `--watch` exit with once the ship ended: 0 shipped everywhere, 1 stopped
/// or halted.
fn exit_code(ship: &Ship) -> i32 {
    match ship.phase {
        ShipPhase::Shipped => 0,
        _ => 1,
    }
}

/// Follows ship `id` until it ends, a line per change; rides out daemon restarts.
async fn follow(api: &ApiArgs, id: &str, retry_for: Duration) -> Result<i32> {
    let path = format!("/api/v1/ships/{id}");
    follow_to_end(
        api,
        &path,
        retry_for,
        progress_line,
        |ship: &Ship| !ship.phase.is_active(),
        exit_code,
    )
    .await
}

/// `shop@v2 · shipping · [staging] passed → [prod-eu prod-us] rolling_out`, and why it waits.
fn progress_line(ship: &Ship) -> String {
    let waves: Vec<String> = ship
        .waves
        .iter()
        .map(|w| format!("[{}] {}", envs(w), w.state))
        .collect();
    let held = ship
        .held
        .as_ref()
        .map(|h| format!(" · held: {h}"))
        .unwrap_or_default();
    format!(
        "{} · {} · {}{held}",
        ship.release_id,
        ship.phase,
        waves.join(" → ")
    )
}

fn envs(w: &WaveRun) -> String {
    let names: Vec<&str> = w.envs.iter().map(|e| e.env.as_str()).collect();
    names.join(" ")
}

/// The bake of a wave in a few words: `30s, passed`, `baking until 12:00:30`, or `-`.
fn bake_words(w: &WaveRun) -> String {
    let Some(ms) = w.bake_ms else {
        return "-".into();
    };
    let length = format_duration(Duration::from_millis(u64::try_from(ms).unwrap_or_default()));
    match (w.state, w.bake_until_ms) {
        (WaveState::Baking, Some(until)) => format!("{length}, until {}", format_ms(until)),
        _ => length,
    }
}

impl Render for Ship {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "ship {} of {}: {} (started by {}, {})",
            self.id,
            self.release_id,
            self.phase,
            self.actor,
            format_ms(self.created_at_ms)
        )?;
        let mut rows = Vec::new();
        for (i, wave) in self.waves.iter().enumerate() {
            for (k, e) in wave.envs.iter().enumerate() {
                let judged = e.bake.as_ref().map_or_else(
                    || "-".to_string(),
                    |b| format!("{} (e {:.1})", b.summary(), b.e_value),
                );
                rows.push(vec![
                    if k == 0 {
                        (i + 1).to_string()
                    } else {
                        String::new()
                    },
                    if k == 0 {
                        wave.state.to_string()
                    } else {
                        String::new()
                    },
                    if k == 0 {
                        bake_words(wave)
                    } else {
                        String::new()
                    },
                    e.env.clone(),
                    e.state.to_string(),
                    judged,
                ]);
            }
        }
        crate::output::table(
            w,
            &[
                ">WAVE",
                "WAVE STATE",
                "BAKE",
                "ENV",
                "ENV STATE",
                "BAKE EVIDENCE",
            ],
            &rows,
        )?;
        for wave in &self.waves {
            for e in &wave.envs {
                if let Some(note) = &e.note {
                    writeln!(w, "  {}: {note}", e.env)?;
                }
                if let Some(shadow) = e.bake.as_ref().and_then(|b| b.shadow_verdict.as_ref()) {
                    writeln!(w, "  {} (shadow bake): {shadow}", e.env)?;
                }
            }
        }
        if let Some(held) = &self.held {
            writeln!(w, "held: {held}")?;
        }
        if let Some(failure) = &self.failure {
            writeln!(w, "stopped: {failure}")?;
        }
        if let Some(h) = &self.halt {
            writeln!(w, "halted at {} (wave {}): {}", h.env, h.wave + 1, h.reason)?;
            for o in &h.options {
                writeln!(w, "  option: {o}")?;
            }
        }
        Ok(())
    }
}

impl Render for Vec<Ship> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(
                w,
                "no ships (ship a release with `backstop release ship SERVICE --version V`)"
            );
        }
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|s| {
                let waves: Vec<String> = s
                    .waves
                    .iter()
                    .map(|w| format!("[{}] {}", envs(w), w.state))
                    .collect();
                vec![
                    s.id.clone(),
                    s.release_id.clone(),
                    s.phase.to_string(),
                    waves.join(" → "),
                    format_ms(s.created_at_ms),
                ]
            })
            .collect();
        crate::output::table(w, &["SHIP", "RELEASE", "PHASE", "WAVES", "STARTED"], &rows)
    }
}
