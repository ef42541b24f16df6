//! The records on the topics, as Rust types. Each derives its Avro schema; `schemas/*.avsc` are
//! exported from these types and a test keeps the two in step (tests/schemas.rs).
//!
//! Namespaces: `nl.gzac.portaal` (portal vocabulary), `nl.gzac.zaak` (GZAC vocabulary),
//! `nl.gzac.common` (shared: notificaties, terugmeldingen).

pub mod common;
pub mod gzac;
pub mod portaal;

use apache_avro::schema::{Name, NamespaceRef, RecordField};
use apache_avro::{AvroSchemaComponent, Schema};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time, in milliseconds since the Unix epoch (Avro `timestamp-millis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// The bridge's clock: the system clock, or a simulated one that starts at a chosen moment and
/// runs on at real speed (`pipeline.clock_start`; the demo; tests that must not depend on the
/// hour they run at). The pipelines get it from their `Config` and hand its time to the routes as
/// `ctx.now`; clones share one offset, so moving it moves every pipeline that holds it.
#[derive(Debug, Clone, Default)]
pub struct Clock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl Clock {
    /// A clock that reads `start` now.
    pub fn starting_at(start: Timestamp) -> Self {
        let clock = Clock::default();
        clock.set(start);
        clock
    }

    /// Read `t` now and run on from there (every clone with it).
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0 - Timestamp::now().0, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn now(&self) -> Timestamp {
        Timestamp(Timestamp::now().0 + self.0.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether it runs off the system clock.
    pub fn simulated(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed) != 0
    }
}

impl Timestamp {
    /// The system clock. Routes never read it: they get the pipeline's `Clock` as `ctx.now`.
    pub fn now() -> Self {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(d.as_millis() as i64)
    }

    /// An RFC 3339 moment (`2026-12-02T21:30:00+01:00`).
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let t: jiff::Timestamp = s.parse().map_err(|e| anyhow::anyhow!("{s:?} is no RFC 3339 moment: {e}"))?;
        Ok(Timestamp(t.as_millisecond()))
    }

    /// Minutes since local midnight in Europe/Amsterdam at this moment.
    pub fn minuut_van_de_dag(self) -> i32 {
        let z = self.zoned();
        i32::from(z.hour()) * 60 + i32::from(z.minute())
    }

    /// The first moment after this one at which it is `minute` past midnight in
    /// Europe/Amsterdam (in a DST gap: the first moment after the gap).
    pub fn volgende(self, minute: i32) -> Timestamp {
        let z = self.zoned();
        let at = |d: jiff::civil::Date| {
            d.at((minute / 60) as i8, (minute % 60) as i8, 0, 0)
                .to_zoned_datetime(amsterdam().clone())
                .map_or(Timestamp::MAX, |z| Timestamp(z.timestamp().as_millisecond()))
        };
        let today = at(z.date());
        if today > self {
            today
        } else {
            z.date().tomorrow().map_or(Timestamp::MAX, at)
        }
    }

    /// This moment in Europe/Amsterdam (clamped to what jiff can hold).
    fn zoned(self) -> jiff::ZonedDateTime {
        let ms = self.0.clamp(0, jiff::Timestamp::MAX.as_millisecond());
        jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::MAX).to_zoned_datetime(amsterdam().clone())
    }

    /// `d` later (saturating).
    pub fn plus(self, d: std::time::Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_millis().min(i64::MAX as u128) as i64).min(Self::MAX.0))
    }

    /// `d` earlier.
    pub fn minus(self, d: std::time::Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(d.as_millis().min(i64::MAX as u128) as i64))
    }

    /// 9999-12-31T23:59:59.999Z: the last moment RFC 3339 can write.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);

    /// RFC 3339 in UTC, as CloudEvents `time` wants it. Total: a moment outside 1970..=9999 is
    /// written as the nearest end of that range (inputs are checked with `checked` first).
    pub fn rfc3339(self) -> String {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(self.0.clamp(0, Self::MAX.0) as u64);
        humantime::format_rfc3339_millis(t).to_string()
    }

    /// This moment, when it lies in 1970..=9999 (what the bridge can write and schedule);
    /// otherwise an error naming `field`.
    /// The moment, or why `field` holding it is out of range.
    pub fn checked(self, field: &str) -> Result<Self, String> {
        match (0..=Self::MAX.0).contains(&self.0) {
            true => Ok(self),
            false => Err(format!("{field} is {} ms since 1970, outside 1970-01-01..9999-12-31", self.0)),
        }
    }
}

/// A calendar day (Avro `date`: days since 1970-01-01), as NL Portal and Open VTB keep
/// deadlines and reminder days. Days are the municipality's: Europe/Amsterdam.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Datum(pub i32);

fn amsterdam() -> &'static jiff::tz::TimeZone {
    static TZ: std::sync::OnceLock<jiff::tz::TimeZone> = std::sync::OnceLock::new();
    // The tz database is compiled in (jiff's bundled tzdb), so this holds on any machine.
    TZ.get_or_init(|| jiff::tz::TimeZone::get("Europe/Amsterdam").expect("bundled tzdb has Europe/Amsterdam"))
}

impl Datum {
    /// 9999-12-30: the last day whose every local hour has a moment (jiff's range ends on
    /// 9999-12-30 22:00 UTC).
    pub const MAX: Datum = Datum(2_932_895);

    fn civil(self) -> jiff::civil::Date {
        let days = self.0.clamp(0, Self::MAX.0);
        jiff::civil::date(1970, 1, 1) + jiff::SignedDuration::from_hours(i64::from(days) * 24)
    }

    fn of(d: jiff::civil::Date) -> Datum {
        Datum(jiff::civil::date(1970, 1, 1).duration_until(d).as_hours().div_euclid(24) as i32)
    }

    /// Today in Europe/Amsterdam, by the system clock.
    pub fn vandaag() -> Datum {
        Self::in_amsterdam(Timestamp::now())
    }

    /// `days` later (earlier when negative).
    pub fn plus(self, days: i32) -> Datum {
        Datum(self.0.saturating_add(days))
    }

    /// `YYYY-MM-DD`.
    pub fn iso(self) -> String {
        self.civil().to_string()
    }

    /// The day it is in Europe/Amsterdam at `t`.
    pub fn in_amsterdam(t: Timestamp) -> Datum {
        Self::of(t.zoned().date())
    }

    /// `hour`:00 on this day in Europe/Amsterdam (in a DST gap: the first moment after it).
    pub fn om(self, hour: i8) -> Timestamp {
        let local = self.civil().at(hour.clamp(0, 23), 0, 0, 0);
        // Total: a moment beyond what can be written is the last one.
        local
            .to_zoned_datetime(amsterdam().clone())
            .map_or(Timestamp::MAX, |z| Timestamp(z.timestamp().as_millisecond().min(Timestamp::MAX.0)))
    }

    /// The first moment after this day in Europe/Amsterdam: a deadline on this day has passed
    /// then (a deadline at local midnight must not end the day before).
    pub fn einde(self) -> Timestamp {
        if self >= Self::MAX {
            return Timestamp::MAX;
        }
        Datum(self.0 + 1).om(0)
    }

    /// This day, when it lies in 1970-01-01..=9999-12-30; otherwise an error naming `field`.
    /// The day, or why `field` holding it is out of range.
    pub fn checked(self, field: &str) -> Result<Self, String> {
        match (0..=Self::MAX.0).contains(&self.0) {
            true => Ok(self),
            false => Err(format!("{field} is day {} since 1970, outside 1970-01-01..9999-12-30", self.0)),
        }
    }
}

impl AvroSchemaComponent for Datum {
    fn get_schema_in_ctxt(_: &mut HashSet<Name>, _: NamespaceRef) -> Schema {
        Schema::Date
    }
    fn get_record_fields_in_ctxt(_: &mut HashSet<Name>, _: NamespaceRef) -> Option<Vec<RecordField>> {
        None
    }
}

impl AvroSchemaComponent for Timestamp {
    fn get_schema_in_ctxt(_: &mut HashSet<Name>, _: NamespaceRef) -> Schema {
        Schema::TimestampMillis
    }
    fn get_record_fields_in_ctxt(_: &mut HashSet<Name>, _: NamespaceRef) -> Option<Vec<RecordField>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_amsterdam_days() {
        let d = Datum::of(jiff::civil::date(2026, 12, 1));
        assert_eq!(d.iso(), "2026-12-01");
        // Midnight in Amsterdam is 23:00 UTC the day before in winter, 22:00 in summer.
        assert_eq!(d.om(0).rfc3339(), "2026-11-30T23:00:00.000Z");
        assert_eq!(Datum::in_amsterdam(d.om(0)), d, "local midnight is that day, not the day before");
        assert_eq!(Datum::in_amsterdam(Timestamp(d.om(0).0 - 1)).iso(), "2026-11-30");
        assert_eq!(d.einde().rfc3339(), "2026-12-01T23:00:00.000Z");
        let summer = Datum::of(jiff::civil::date(2026, 7, 1));
        assert_eq!(summer.om(9).rfc3339(), "2026-07-01T07:00:00.000Z");
        // 2026-03-29 02:00 does not exist in Amsterdam: the first moment after the gap.
        assert_eq!(Datum::of(jiff::civil::date(2026, 3, 29)).om(2).rfc3339(), "2026-03-29T01:00:00.000Z");
        assert_eq!(Datum::MAX.iso(), "9999-12-30");
        for d in [Datum(0), Datum::MAX] {
            for h in 0..24 {
                assert!(d.om(h) <= d.einde(), "ordered at the ends of the range");
            }
        }
        // Total outside it (inputs are checked first; nothing may panic).
        for d in [Datum(i32::MAX), Datum(i32::MIN)] {
            let _ = (d.om(23), d.einde(), d.iso());
        }
        assert_eq!(Datum::in_amsterdam(Timestamp::MAX), Datum::MAX);
        assert_eq!(Datum(0).iso(), "1970-01-01");
        assert!(Datum(-1).checked("d").is_err() && Datum(Datum::MAX.0 + 1).checked("d").is_err());
    }
}
