//! The demo's sample open dataset: a made-up but plausible electricity-grid
//! release, generated on first start into the data folder and reused after.
//!
//! - `grid-hourly.csv`: hourly demand, solar, wind and carbon intensity for 14
//!   regions over 2013–2024 (about 62 MB, so that download speed is visible);
//! - `grid-daily.jsonl`: the same readings summed per region and day, one JSON
//!   object per line; the query API serves these rows;
//! - `regions.csv`: the region codes and names;
//! - `early/grid-daily-2025-q1.csv`, in its own folder beside `datasets/`: the
//!   next release, published (by its file time) on first start, which members get
//!   first (the demo's `early` route has a 30-day early-access window).
//!
//! Generation is deterministic (a fixed-seed generator), so every demo has the
//! same bytes and the same ETags.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bumped when the generated files change, so that an old data folder is regenerated.
const VERSION: &str = "2";

/// Region codes and display names.
pub const REGIONS: [(&str, &str); 14] = [
    ("north", "North"),
    ("north-east", "North East"),
    ("east", "East"),
    ("south-east", "South East"),
    ("south", "South"),
    ("south-west", "South West"),
    ("west", "West"),
    ("north-west", "North West"),
    ("central", "Central"),
    ("highlands", "Highlands"),
    ("islands", "Islands"),
    ("coast", "Coast"),
    ("valley", "Valley"),
    ("capital", "Capital"),
];

/// First and last year of the release.
const YEARS: (i64, i64) = (2013, 2024);

/// One row of `grid-daily.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DailyRow {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Region code.
    pub region: String,
    /// Energy demanded, MWh.
    pub demand_mwh: u64,
    /// Solar generation, MWh.
    pub solar_mwh: u64,
    /// Wind generation, MWh.
    pub wind_mwh: u64,
    /// Mean carbon intensity, g CO2 per kWh.
    pub co2_g_per_kwh: u32,
}

/// Where the early-access release lives inside a data folder: outside
/// `datasets/`, so that the public bulk route cannot reach it by another path.
pub fn early_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("early")
}

/// Where the dataset lives inside a data folder.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("datasets")
}

/// Generates the dataset unless a complete one of this version is already there.
/// Files are written under temporary names and renamed, so an interrupted first
/// start leaves no half file that a later start would trust.
pub fn ensure(data_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = dir(data_dir);
    let marker = dir.join(".complete");
    if fs::read_to_string(&marker).is_ok_and(|v| v.trim() == VERSION) {
        return Ok(dir);
    }
    fs::create_dir_all(&dir)?;
    generate(&dir)?;
    generate_early(&early_dir(data_dir))?;
    fs::write(&marker, VERSION)?;
    Ok(dir)
}

/// A small fixed-seed generator (SplitMix64): reproducible noise, no dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn generate(dir: &Path) -> std::io::Result<()> {
    let mut regions = BufWriter::new(File::create(dir.join("regions.csv.tmp"))?);
    writeln!(regions, "region,name")?;
    for (code, name) in REGIONS {
        writeln!(regions, "{code},{name}")?;
    }
    regions.into_inner().map_err(|e| e.into_error())?.sync_all()?;

    let mut hourly = BufWriter::with_capacity(1 << 20, File::create(dir.join("grid-hourly.csv.tmp"))?);
    let mut daily = BufWriter::with_capacity(1 << 20, File::create(dir.join("grid-daily.jsonl.tmp"))?);
    writeln!(hourly, "timestamp,region,demand_mw,solar_mw,wind_mw,co2_g_per_kwh")?;
    let mut noise = Noise(0x00C0_FFEE);
    let first_day = days_from_civil(YEARS.0, 1, 1);
    let last_day = days_from_civil(YEARS.1, 12, 31);
    for day in first_day..=last_day {
        let (y, m, d) = civil_from_days(day);
        let season = (m as i64 - 7).unsigned_abs(); // 0 in July, 6 in January
        for (r, (code, _)) in REGIONS.iter().enumerate() {
            let base = 800 + 150 * r as u64;
            let (mut dem, mut sol, mut win, mut co2) = (0u64, 0u64, 0u64, 0u64);
            for h in 0..24u64 {
                let daytime = h.abs_diff(13);
                let demand = base + 40 * season + 30 * (12u64.saturating_sub(daytime)) + noise.below(120);
                let solar = if daytime < 7 { (7 - daytime) * (90 - 10 * season) + noise.below(40) } else { 0 };
                let wind = 50 + 30 * season + noise.below(400);
                let clean = (solar + wind).min(demand);
                let carbon = 60 + 380 * (demand - clean) / demand + noise.below(20);
                writeln!(hourly, "{y:04}-{m:02}-{d:02}T{h:02}:00Z,{code},{demand},{solar},{wind},{carbon}")?;
                dem += demand;
                sol += solar;
                win += wind;
                co2 += carbon;
            }
            let row = DailyRow {
                date: format!("{y:04}-{m:02}-{d:02}"),
                region: (*code).to_owned(),
                demand_mwh: dem,
                solar_mwh: sol,
                wind_mwh: win,
                co2_g_per_kwh: (co2 / 24) as u32,
            };
            serde_json::to_writer(&mut daily, &row)?;
            daily.write_all(b"\n")?;
        }
    }
    for (writer, name) in [(hourly, "grid-hourly.csv"), (daily, "grid-daily.jsonl")] {
        writer.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(dir.join(format!("{name}.tmp")), dir.join(name))?;
    }
    fs::rename(dir.join("regions.csv.tmp"), dir.join("regions.csv"))?;
    Ok(())
}

/// The early release: daily totals per region for the first quarter of 2025.
fn generate_early(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join("grid-daily-2025-q1.csv.tmp");
    let mut out = BufWriter::new(File::create(&tmp)?);
    writeln!(out, "date,region,demand_mwh,solar_mwh,wind_mwh")?;
    let mut noise = Noise(0x2025);
    for day in days_from_civil(2025, 1, 1)..=days_from_civil(2025, 3, 31) {
        let (y, m, d) = civil_from_days(day);
        for (r, (code, _)) in REGIONS.iter().enumerate() {
            let demand = 24 * (900 + 150 * r as u64) + noise.below(3000);
            writeln!(out, "{y:04}-{m:02}-{d:02},{code},{demand},{},{}", noise.below(2000), 2000 + noise.below(8000))?;
        }
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    fs::rename(tmp, dir.join("grid-daily-2025-q1.csv"))
}

/// Reads the daily rows back for the query API.
pub fn load_daily(dir: &Path) -> std::io::Result<Vec<DailyRow>> {
    let text = fs::read_to_string(dir.join("grid-daily.jsonl"))?;
    text.lines().map(|l| serde_json::from_str(l).map_err(std::io::Error::other)).collect()
}

// Calendar arithmetic from Howard Hinnant's public-domain date algorithms: the
// demo needs dates for 3,000 days and nothing else from a date library.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(civil_from_days(days_from_civil(2016, 12, 31) + 1), (2017, 1, 1));
    }
}
