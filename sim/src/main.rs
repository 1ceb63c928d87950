//! `swarm-sim`: runs a simulated swarm and prints completion against the floor, the seeders'
//! copies and the tracker's load, one row per run.

use std::time::Duration;

use clap::Parser;
use swarm_sim::scenario::{Outcome, Scenario};

#[derive(Parser)]
#[command(
    about = "A deterministic simulation of a swarm, driving swarm's own scheduler, offer policy, \
                   upload slots and tracker state over simulated links"
)]
struct Args {
    /// Start from a namespace scenario's settings: ten, forty or hundred (the others below
    /// then change it).
    #[arg(long)]
    preset: Option<String>,
    /// Hosts fetching the file.
    #[arg(long)]
    fetchers: Option<usize>,
    /// Of them, killed at 40% of the soonest finish.
    #[arg(long)]
    kill: Option<usize>,
    /// Hosts holding the file from the start.
    #[arg(long)]
    seeders: Option<usize>,
    /// The file's size, e.g. 16MiB, 1GB.
    #[arg(long)]
    size: Option<bytesize::ByteSize>,
    /// Its chunks' size, e.g. 64KiB.
    #[arg(long)]
    chunk: Option<bytesize::ByteSize>,
    /// Each seeder's link in Mbit/s, each way.
    #[arg(long)]
    seed_mbit: Option<f64>,
    /// The fetchers' links in Mbit/s, each way, given out in turn (e.g. 2,4,8).
    #[arg(long, value_delimiter = ',')]
    mbit: Option<Vec<f64>>,
    /// Each host's one-way delay to the core, in milliseconds.
    #[arg(long)]
    delay_ms: Option<f64>,
    /// The fetchers start evenly over this many seconds (0: all at once).
    #[arg(long)]
    ramp: Option<f64>,
    /// Runs, with seeds 1, 2, ...
    #[arg(long, default_value_t = 1)]
    runs: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut scenario = match args.preset.as_deref() {
        None | Some("ten") => Scenario::ten_peers(),
        Some("forty") => Scenario::forty_peers(),
        Some("hundred") => Scenario::hundred_peers(),
        Some(other) => anyhow::bail!("no preset {other:?}: use ten, forty or hundred"),
    };
    if let Some(n) = args.fetchers {
        scenario.fetchers = n;
    }
    if let Some(n) = args.kill {
        scenario.kill = n;
    }
    if let Some(n) = args.seeders {
        scenario.seeders = n;
    }
    if let Some(size) = args.size {
        scenario.size = size.as_u64();
    }
    if let Some(chunk) = args.chunk {
        scenario.chunk = u32::try_from(chunk.as_u64())?;
    }
    if let Some(rate) = args.seed_mbit {
        scenario.seed_rate = rate * 1e6;
    }
    if let Some(rates) = args.mbit {
        scenario.rates = rates.iter().map(|r| r * 1e6).collect();
    }
    if let Some(ms) = args.delay_ms {
        scenario.delay = Duration::from_secs_f64(ms / 1000.0);
    }
    if let Some(ramp) = args.ramp {
        scenario.ramp = Duration::from_secs_f64(ramp);
    }
    anyhow::ensure!(scenario.kill < scenario.fetchers, "--kill must be under --fetchers");
    anyhow::ensure!(!scenario.rates.is_empty(), "--mbit needs a rate");
    println!(
        "{} fetchers ({} killed), {} seeder(s) at {} Mbit/s, fetchers at {:?} Mbit/s, {} in {} chunks, \
         {:.1} ms one-way, ramp {:.0} s",
        scenario.fetchers,
        scenario.kill,
        scenario.seeders,
        scenario.seed_rate / 1e6,
        scenario.rates.iter().map(|r| r / 1e6).collect::<Vec<_>>(),
        bytesize::ByteSize(scenario.size),
        bytesize::ByteSize(u64::from(scenario.chunk)),
        scenario.delay.as_secs_f64() * 1000.0,
        scenario.ramp.as_secs_f64(),
    );
    println!(
        "{:>4} {:>8} {:>6} {:>6} {:>7} {:>8} {:>7} {:>8} {:>12} {:>10} {:>8}",
        "SEED", "FLOOR s", "p50", "p99", "p99.9", "slowest", "copies", "to surv", "avail frames", "tracker/s", "wall s"
    );
    for seed in 1..=args.runs {
        scenario.seed = seed;
        let outcome = scenario.run();
        print_row(seed, &outcome);
    }
    Ok(())
}

fn print_row(seed: u64, o: &Outcome) {
    println!(
        "{:>4} {:>8.1} {:>5.2}x {:>5.2}x {:>6.2}x {:>7.2}x {:>7.2} {:>8.2} {:>12} {:>10.1} {:>8.1}{}",
        seed,
        o.floor,
        o.percentile(50.0),
        o.percentile(99.0),
        o.percentile(99.9),
        o.multiples.last().copied().unwrap_or(f64::NAN),
        o.seeder_copies,
        o.survivors_from_seeders,
        o.counts.availability_frames,
        o.tracker_rate(),
        o.wall.as_secs_f64(),
        if o.unfinished > 0 {
            format!("  ({} never finished)", o.unfinished)
        } else {
            String::new()
        }
    );
}
