//! `wan-relay`: the command around the library (see its crate doc).
//!
//!     wan-relay --listen 127.0.0.1:9000 --to 127.0.0.1:7000 --rtt 50ms --loss 0.5 --rate 1gbit
//!     wan-relay --blast 3s            # how fast the relay itself forwards, no shaping
//!
//! Prints the address it listens on, then, when stopped (SIGINT or SIGTERM), what it passed
//! and dropped each way.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use wan_relay::{relay, Link, Shape, Socket};

#[derive(Parser, Debug)]
#[command(about = "A UDP relay that adds delay, jitter and loss and caps the rate")]
struct Args {
    /// Where clients send (port 0 picks one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where their datagrams go.
    #[arg(long, required_unless_present = "blast")]
    to: Option<SocketAddr>,
    /// Round-trip time added: half of it each way.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    rtt: Duration,
    /// Extra one-way delay drawn uniformly between 0 and this for each datagram (no reordering).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    jitter: Duration,
    /// Percent of datagrams lost, each way.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// The path's MTU: datagrams larger than it carries (its MTU less 28 bytes of IPv4 and UDP
    /// headers) are dropped, as a router drops what it may not fragment; 0 for any size.
    #[arg(long, default_value_t = 1500)]
    mtu: usize,
    /// Rate cap each way, in bits per second: 1gbit, 250mbit, 800kbit; 0 for none.
    #[arg(long, default_value = "0", value_parser = parse_rate)]
    rate: f64,
    /// Longest a datagram may queue behind the rate cap before it is dropped (default: one
    /// round trip, at least 10 ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    buffer: Option<Duration>,
    /// Instead of relaying: send datagrams through a relay in this process for this long and
    /// print the rate that came out.
    #[arg(long, value_parser = humantime::parse_duration)]
    blast: Option<Duration>,
}

/// Bytes per second from a rate in bits per second with an optional k, m or g prefix.
fn parse_rate(text: &str) -> Result<f64> {
    let lower = text.trim().to_ascii_lowercase();
    let number = lower.trim_end_matches("bit").trim_end_matches("bps");
    let (digits, scale) = match number.chars().last() {
        Some('k') => (&number[..number.len() - 1], 1e3),
        Some('m') => (&number[..number.len() - 1], 1e6),
        Some('g') => (&number[..number.len() - 1], 1e9),
        _ => (number, 1.0),
    };
    let bits: f64 = digits
        .parse()
        .with_context(|| format!("not a rate: {text:?} (try 250mbit)"))?;
    if !bits.is_finite() || bits < 0.0 {
        bail!("not a rate: {text:?}");
    }
    Ok(bits * scale / 8.0)
}

impl Args {
    fn shape(&self) -> Result<Shape> {
        if !(0.0..=100.0).contains(&self.loss) {
            bail!("--loss is a percentage, from 0 to 100");
        }
        Ok(Shape {
            delay: self.rtt / 2,
            jitter: self.jitter,
            loss: self.loss / 100.0,
            rate: (self.rate > 0.0).then_some(self.rate),
            buffer: self.buffer.unwrap_or(self.rtt.max(Duration::from_millis(10))),
            max_datagram: (self.mtu > 0).then(|| self.mtu.saturating_sub(28)),
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let shape = args.shape()?;
    let (up, down) = (Arc::new(Link::new(shape.clone())), Arc::new(Link::new(shape)));
    if let Some(length) = args.blast {
        return blast(length, up).await;
    }
    let target = args.to.expect("clap requires --to without --blast");
    let listen = Socket::bind(args.listen).with_context(|| format!("cannot bind {}", args.listen))?;
    println!("{}", listen.local_addr()?);
    let relaying = relay::run(listen, target, up.clone(), down.clone());
    tokio::select! {
        result = relaying => result.context("relaying stopped")?,
        _ = stopped() => {}
    }
    for (direction, link) in [("to target", &up), ("back", &down)] {
        let tally = link.tally();
        eprintln!(
            "wan-relay {direction}: {} bytes passed, {} datagrams lost at random, {} dropped by a full buffer, {} larger than the MTU",
            tally.passed, tally.lost, tally.overflowed, tally.oversized
        );
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a signal handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Sends full batches of 1,452-byte datagrams (quinn's largest on loopback) through a relay
/// shaped by `up` to a counting sink, for `length`, and prints the rate that arrived.
async fn blast(length: Duration, up: Arc<Link>) -> Result<()> {
    const DATAGRAM: usize = 1452;
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let (source, sink, listen) = (
        Socket::bind(loopback)?,
        Socket::bind(loopback)?,
        Socket::bind(loopback)?,
    );
    let (sink_addr, relay_addr) = (sink.local_addr()?, listen.local_addr()?);
    let idle = Arc::new(Link::new(Shape {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
        rate: None,
        buffer: Duration::ZERO,
        max_datagram: None,
    }));
    tokio::spawn(relay::run(listen, sink_addr, up, idle));
    let received = Arc::new(AtomicU64::new(0));
    let counting = received.clone();
    tokio::spawn(async move { relay::count(&sink, &counting).await });
    let batch = vec![7u8; DATAGRAM * 40];
    let end = Instant::now() + length;
    let mut sent = 0u64;
    while Instant::now() < end {
        source.send(relay_addr, &batch, DATAGRAM).await?;
        sent += batch.len() as u64;
    }
    // What is still in flight has a moment to land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let arrived = received.load(Ordering::Relaxed);
    let seconds = length.as_secs_f64();
    println!(
        "wan-relay blast: {:.2} GB/s sent, {:.2} GB/s came out of the relay ({:.1}% of what was sent)",
        sent as f64 / seconds / 1e9,
        arrived as f64 / seconds / 1e9,
        100.0 * arrived as f64 / sent.max(1) as f64
    );
    Ok(())
}
